"""`detret demo`: the paper's whole experiment in miniature on the embedded synthetic dataset."""
