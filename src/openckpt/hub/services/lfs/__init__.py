"""Git LFS on the hub: signed transfers, multipart uploads, and purging LFS files from a history."""
