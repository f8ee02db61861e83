"""Scenes of the synthetic dataset: what a worn product's box marks is in the photo."""
import cv2
import numpy as np
import pytest

from detret.data.synth.garments import sample_garment
from detret.data.synth.generate import _compatible
from detret.data.synth.scenes import dress_figure, figure_transform, sample_outfit

WORN_LABELS = ("top", "outer", "dress", "skirt", "pants", "shorts", "belt", "bag", "headwear", "sunglasses",
               "scarf/tie", "footwear", "boots")


def _mask(polygons, size_hw):
    mask = np.zeros(size_hw, np.uint8)
    cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in polygons], 1)
    return mask.astype(bool)


def hidden_share(required: str, seed: int, size_hw=(500, 200)) -> float:
    """Share of the required garment's outline that garments drawn after it cover, from the outlines alone."""
    rng = np.random.default_rng(seed)
    labels = sample_outfit(rng, required=[required])
    garments = {lab: (sample_garment(lab, rng), "product" if lab == required else None) for lab in labels}
    canvas = np.zeros(size_hw + (3,), np.uint8)
    instances = dress_figure(canvas, figure_transform(0, 0, size_hw[0]), garments, rng, warp=0.02)
    product = [k for k, inst in enumerate(instances) if inst.tag == "product"]
    shown = np.zeros(size_hw, bool)
    for k in product:
        shown |= _mask(instances[k].polygons, size_hw)
    over = np.zeros(size_hw, bool)
    for inst in instances[max(product) + 1:]:
        if inst.tag != "product":
            over |= _mask(inst.polygons, size_hw)
    return float((shown & over).sum() / shown.sum())


@pytest.mark.parametrize("label", WORN_LABELS)
def test_a_worn_product_is_never_mostly_hidden(label):
    # An open outer garment used to be drawn over a worn belt in 15% of its photos, hiding up to 88% of it
    # while its box still spanned the coat. Now nothing loses more than 55% of its outline (the most: shorts
    # under a long coat, their legs still out; 200 seeds), and a belt nothing.
    shares = [hidden_share(label, seed) for seed in range(40)]
    assert max(shares) < (0.01 if label == "belt" else 0.55), (label, max(shares))


def test_no_belt_under_an_outer_unless_both_are_asked_for():
    outfits = [sample_outfit(np.random.default_rng(seed)) for seed in range(400)]
    assert sum("outer" in o for o in outfits) > 40 and sum("belt" in o for o in outfits) > 20
    assert not any({"outer", "belt"} <= set(o) for o in outfits)
    for seed in range(200):
        assert "outer" not in sample_outfit(np.random.default_rng(seed), required=["belt"])
        assert "belt" not in sample_outfit(np.random.default_rng(seed), required=["outer"])
    assert not _compatible("belt", "outer") and not _compatible("outer", "belt")
    assert _compatible("belt", "top") and _compatible("outer", "pants")
