"""Containers: zip (relaxed, torch-compatible), tar, and single-stream compression."""
