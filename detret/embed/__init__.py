"""Embedding stage: descriptors of gallery and query crops, by one model or an ensemble."""
