"""The unit tier: pure functions and the session layer on a scripted model; no llama.cpp, no model file."""
