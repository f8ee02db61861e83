"""Datasets: category vocabularies, loaders of the published formats, the synthetic dataset."""
