"""Images sent with a message: checked before anything decodes them, and named by their content (pure core)."""
