"""GGUF files: the header reader, quant names and file names (pure)."""
