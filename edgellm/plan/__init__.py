"""The fit planner: model spec (from the GGUF header), memory estimate, and the choice of settings."""
