"""Chat templates, their bounded sandbox, and the reasoning and stop filters of a reply (pure)."""
