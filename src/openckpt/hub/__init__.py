"""The hub: a self-hosted server speaking the Hugging Face Hub API, with a web UI."""
