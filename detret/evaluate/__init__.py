"""Evaluation (Section 4.3): within-category mAP and Acc@K as in Kiapour et al."""
