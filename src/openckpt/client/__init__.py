"""Thin helpers over huggingface_hub pointed at an openckpt hub (no second HTTP client)."""
