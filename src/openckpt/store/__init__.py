"""Content-addressed blob storage behind one interface: local filesystem now, object storage later."""
