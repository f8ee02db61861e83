"""Retrieval network (Section 3.2): backbone -> GeM -> L2 -> FC -> L2, trained with triplet or AP loss."""
