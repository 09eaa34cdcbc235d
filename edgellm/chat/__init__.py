"""Chat: templates, the engine that streams replies, history in SQLite, and the headless REPL."""
