"""Converting Hugging Face transformers checkpoints to GGUF, one tensor at a time, without torch."""
