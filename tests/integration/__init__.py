"""The integration tier: llama.cpp, the test model, real processes, servers, the local Hub, the TUI, terminals."""
