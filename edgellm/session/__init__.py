"""The session layer: the model host, the opener, chat sessions and completions, the history."""
