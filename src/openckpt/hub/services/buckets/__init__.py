"""Buckets: mutable, unversioned storage under an account; their files, and publishing them to repos by Xet hash."""
