"""Evaluation (Section 4.3): within-category mAP and Acc@K as in Kiapour et al. (the metric functions are in
`detret.retrieval.metrics`, which training's validation uses too), Table 1's tables, DeepFashion2 Recall@K."""
