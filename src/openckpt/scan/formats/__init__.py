"""Per-format scanners: torch, numpy, joblib, safetensors, GGUF, ONNX, Keras, TF SavedModel."""
