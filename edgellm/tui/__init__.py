"""The full-screen terminal app (Textual): hardware, models, downloads, conversion and streaming chat.

A thin front end over the chat session, the model opener, progress events and typed errors. Nothing outside
this package imports it except the commands that open it, so headless paths never load Textual.
"""
