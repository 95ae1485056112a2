"""Content-addressed blob storage behind one interface: local files (default) or S3-compatible object storage."""
