"""The machine: what it has (detect), how that is written down (profile), and where facts come from (probes)."""
