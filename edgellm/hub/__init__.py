"""The Hugging Face Hub: model references, repo listings, remote sizing, resumable verified downloads."""
