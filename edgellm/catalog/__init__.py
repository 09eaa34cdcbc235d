"""The curated model catalog, what it recommends for a machine, and the models on this machine."""
