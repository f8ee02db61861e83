"""DeepFashion2 per-image annotations and the consumer/shop matching rule."""
import itertools
import json

import pytest

from detret.data.categories import load_categories
from detret.data.deepfashion2 import load_deepfashion2, matches, parse_annotation

CATS = load_categories().deepfashion2


def test_real_record(realdata):
    items = parse_annotation(realdata / "deepfashion2/annos_000001.json", CATS)
    assert [(i.item, i.domain, i.pair_id, i.style, i.category) for i in items] == [
        (1, "consumer", 1, 1, "short_sleeved_shirt"), (2, "consumer", 1, 0, "trousers")]
    assert items[0].box_xyxy == (0.0, 29.0, 466.0, 622.0)
    assert (items[0].occlusion, items[0].scale, items[0].zoom_in, items[0].viewpoint) == (2, 3, 2, 2)


def test_coco_converted_file_is_refused_clearly(realdata):
    # The official COCO converter drops `source`: it is not the per-image format.
    with pytest.raises(ValueError, match="coco_converted_000264_000265.json: 'source' must be"):
        parse_annotation(realdata / "deepfashion2/coco_converted_000264_000265.json", CATS)


def _item(cat=1, style=1, box=(10, 10, 50, 60)):
    return {"category_id": cat, "category_name": CATS[cat - 1] if cat <= len(CATS) else "?", "style": style, "bounding_box": list(box),
            "occlusion": 1, "scale": 2, "zoom_in": 1, "viewpoint": 2}


def _write_split(root, records):
    annos = root / "validation" / "annos"
    annos.mkdir(parents=True)
    for i, rec in enumerate(records, start=1):
        (annos / f"{i:06d}.json").write_text(json.dumps(rec))


@pytest.fixture
def df2(tmp_path, realdata):
    records = [
        {"source": "user", "pair_id": 1, "item1": _item(1, 1), "item2": _item(8, 0)},
        {"source": "user", "pair_id": 1, "item1": _item(1, 2)},
        {"source": "shop", "pair_id": 1, "item1": _item(1, 1), "item2": _item(8, 0)},
        {"source": "shop", "pair_id": 1, "item1": _item(1, 1)},
        {"source": "shop", "pair_id": 2, "item1": _item(1, 1)},           # other pair, same style number
        {"source": "user", "pair_id": 3, "item1": _item(11, 1)},          # no shop counterpart
        {"source": "shop", "pair_id": 1, "item1": _item(1, 2), "item2": _item(9, 3)},
    ]
    _write_split(tmp_path, records)
    return load_deepfashion2(tmp_path, "validation")


def test_matching_index_equals_brute_force_rule(df2):
    for q in df2.items:
        brute = {o.key for o in df2.items if matches(q, o)}
        assert {p.key for p in df2.positives(q)} == brute
    # the rule is symmetric and never matches style 0
    for a, b in itertools.product(df2.items, repeat=2):
        assert matches(a, b) == matches(b, a)
        if a.style == 0:
            assert not matches(a, b)


def test_both_directions(df2):
    c2s_q, c2s_g = df2.queries("consumer2shop"), df2.gallery("consumer2shop")
    assert all(q.domain == "consumer" and q.style > 0 for q in c2s_q) and len(c2s_q) == 3
    assert all(g.domain == "shop" for g in c2s_g) and len(c2s_g) == 6  # style-0 shop item stays as a distractor
    by_key = {q.key: q for q in c2s_q}
    assert {p.key for p in df2.positives(by_key[("000001", 1)])} == {("000003", 1), ("000004", 1)}
    assert {p.key for p in df2.positives(by_key[("000002", 1)])} == {("000007", 1)}
    assert df2.positives(by_key[("000006", 1)]) == []
    s2c_q = df2.queries("shop2consumer")
    assert all(q.domain == "shop" and q.style > 0 for q in s2c_q) and len(s2c_q) == 5
    with pytest.raises(ValueError, match="direction"):
        df2.queries("street2shop")
    assert df2.image_path("000001").as_posix().endswith("validation/image/000001.jpg")


@pytest.mark.parametrize("record, message", [
    ({"source": "web", "pair_id": 1}, "'source' must be"),
    ({"source": "user", "pair_id": "1"}, "'pair_id' must be an integer"),
    ({"source": "user", "pair_id": 1, "item1": _item(14)}, "category_id 14 is not in 1..13"),
    ({"source": "user", "pair_id": 1, "item1": _item(box=(5, 5, 5, 9))}, "has no area"),
    ({"source": "user", "pair_id": 1, "item1": dict(_item(), bounding_box=[1, 2, 3])}, "bounding_box must be"),
    ({"source": "user", "pair_id": 1, "item1": [1]}, "'item1' must be an object"),
])
def test_malformed_files_name_file_and_field(tmp_path, record, message):
    _write_split(tmp_path, [record])
    with pytest.raises(ValueError, match=message) as err:
        load_deepfashion2(tmp_path, "validation")
    assert "000001.json" in str(err.value)


def test_missing_split_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="validation/annos"):
        load_deepfashion2(tmp_path, "validation")
