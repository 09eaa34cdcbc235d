"""edgellm: run GGUF language models on laptops and edge boards, fitted to the machine."""

__version__ = "0.1.0"
