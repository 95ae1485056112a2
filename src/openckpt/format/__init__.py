"""The checkpoint directory format: manifest schema, safetensors I/O, foreign-format readers."""
