"""anonymax: train a visual anonymizer against a black-box multimodal LLM (JAX/Flax)."""

__version__ = "0.1.0"
