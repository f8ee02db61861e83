"""detret: detect-then-retrieve street-to-shop fashion retrieval."""

__version__ = "0.1.0"
