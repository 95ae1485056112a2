"""The web UI: server-rendered pages that work without JavaScript, one module per area."""
