"""The bundled trainer: an adapter VLM (frozen vision encoder + trainable adapter + frozen LLM) in plain PyTorch."""
