"""Search stage: within-category nearest shop photos of each street query, with FAISS."""
