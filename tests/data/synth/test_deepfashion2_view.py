"""The synthetic test products in DeepFashion2's format: what the loader reads agrees with the Street2Shop files."""
import json

import numpy as np

from detret.data.deepfashion2 import load_deepfashion2
from detret.data.synth.deepfashion2_view import TO_DEEPFASHION2, occlusion_level, scale_level, zoom_level
from detret.data.synth.generate import shop_on_figure


def test_levels_by_hand():
    assert [scale_level(b, 100, 100) for b in [(0, 0, 30, 30), (0, 0, 50, 50), (0, 0, 60, 60)]] == [1, 2, 3]
    assert occlusion_level((0, 0, 10, 10), []) == 1
    assert occlusion_level((0, 0, 10, 10), [(5, 0, 20, 10)]) == 3          # half of it covered
    assert occlusion_level((0, 0, 10, 10), [(8, 0, 20, 10)]) == 2          # a fifth
    assert [zoom_level(b, 100, 100) for b in [(5, 5, 90, 90), (0, 5, 90, 90), (0, 0, 100, 100)]] == [1, 2, 3]


def test_view_matches_the_street2shop_test_pairs(synth_small):
    out, cfg, _ = synth_small
    data = load_deepfashion2(out / "deepfashion2", "validation")
    consumer = [i for i in data.items if i.domain == "consumer"]
    shop = [i for i in data.items if i.domain == "shop"]
    meta = out / "street2shop" / "meta" / "json"
    pairs = [p for c in TO_DEEPFASHION2 for p in json.loads((meta / f"test_pairs_{c}.json").read_text())]
    assert len(consumer) == len(pairs) > 0
    products = {p["product"] for p in pairs}
    gallery = [g for c in TO_DEEPFASHION2 for g in json.loads((meta / f"retrieval_{c}.json").read_text())
               if g["product"] in products]
    assert len(shop) == len(gallery)
    shop_keys = {(s.pair_id, s.style) for s in shop}
    assert all((c.pair_id, c.style) in shop_keys for c in consumer)  # every query has a match
    # a consumer item's box is its pair's box, its image the street photo's pixels
    first = pairs[0]
    item = consumer[0]
    b = first["bbox"]
    assert item.box_xyxy == (b["left"], b["top"], b["left"] + b["width"], b["top"] + b["height"])
    assert (data.image_path(item.image_id).read_bytes()
            == (out / "street2shop" / "images" / f"{first['photo']:09d}.jpg").read_bytes())
    # shop viewpoints follow the generator's own draw: on a figure (frontal) or alone (no wear)
    on_figure = [shop_on_figure(cfg, g["photo"]) for g in gallery]
    assert [s.viewpoint for s in shop] == [2 if f else 1 for f in on_figure]
    assert 0 < np.mean(on_figure) < 1 and {c.viewpoint for c in consumer} == {2}
