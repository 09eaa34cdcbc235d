"""The OpenAI-compatible HTTP server (`edgellm serve`): FastAPI on uvicorn over one loaded model."""
