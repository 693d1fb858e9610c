"""VirNucPro as a service: identical input preparation, packed ESM-2 embeddings, classification."""

__version__ = "0.1.0"
