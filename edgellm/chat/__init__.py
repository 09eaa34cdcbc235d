"""Chat: the session front ends drive, the model that completes messages, templates, history, the headless REPL."""
