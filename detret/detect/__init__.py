"""Detection stage: the clothing detector (Detectron2) and the crop policy of Section 3.1."""
