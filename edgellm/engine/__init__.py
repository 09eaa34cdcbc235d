"""The llama.cpp engine: loading a model and streaming tokens. Imports llama_cpp only when used."""
