"""HTTP routes, one module per area of the API; each is a thin layer over hub.services."""
