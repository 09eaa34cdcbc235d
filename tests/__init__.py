"""edgellm's test suite: tests/unit (no llama.cpp, no model file, no server, no app), tests/integration (the rest),
tests/support (what both tiers share), tests/fixtures (recorded data)."""
