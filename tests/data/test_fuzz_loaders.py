"""Malformed annotation files give a clear error naming the file, never a traceback from deep inside."""
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detret.data.categories import load_categories
from detret.data.deepfashion2 import parse_annotation
from detret.data.modanet import load_modanet
from detret.data.street2shop import load_street2shop

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
# Records that look almost right, with any field replaced by anything.
PAIR = st.fixed_dictionaries({"photo": st.integers(1, 99) | JSON, "product": st.integers(1, 9) | JSON,
                              "bbox": st.fixed_dictionaries({"left": st.integers(0, 9) | JSON,
                                                             "top": st.integers(0, 9) | JSON,
                                                             "width": st.integers(0, 9) | JSON,
                                                             "height": st.integers(0, 9) | JSON}) | JSON})
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(pairs=st.lists(PAIR, max_size=4) | JSON)
def test_street2shop_pairs(tmp_path_factory, pairs):
    root = tmp_path_factory.mktemp("s2s")
    meta = root / "meta" / "json"
    meta.mkdir(parents=True)
    (meta / "retrieval_hats.json").write_text(json.dumps([{"photo": 1, "product": 1}]))
    (meta / "train_pairs_hats.json").write_text("[]")
    (meta / "test_pairs_hats.json").write_text(json.dumps(pairs))
    try:
        load_street2shop(root, categories=["hats"])
    except ValueError as exc:
        assert "test_pairs_hats.json" in str(exc)


ITEM = st.fixed_dictionaries({"category_id": st.integers(0, 14) | JSON, "style": st.integers(0, 3) | JSON,
                              "bounding_box": st.lists(st.integers(0, 50), min_size=4, max_size=4) | JSON})


@FUZZ
@given(doc=st.fixed_dictionaries({"source": st.sampled_from(["user", "shop"]) | JSON,
                                  "pair_id": st.integers(0, 5) | JSON, "item1": ITEM | JSON}) | JSON)
def test_deepfashion2_annotation(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("df2") / "000001.json"
    path.write_text(json.dumps(doc))
    try:
        parse_annotation(path, load_categories().deepfashion2)
    except ValueError as exc:
        assert "000001.json" in str(exc)


ANN = st.fixed_dictionaries({"id": st.integers(1, 99), "image_id": st.integers(1, 3) | JSON,
                             "category_id": st.integers(0, 14) | JSON,
                             "bbox": st.lists(st.integers(-5, 50), min_size=4, max_size=4) | JSON,
                             "segmentation": st.lists(st.lists(st.integers(0, 50), max_size=8), max_size=2) | JSON,
                             "iscrowd": st.just(0)})


@FUZZ
@given(anns=st.lists(ANN, max_size=3, unique_by=lambda a: a["id"]))
def test_modanet_annotations(tmp_path_factory, anns):
    labels = load_categories().modanet
    doc = {"images": [{"id": 1, "file_name": "0000001.jpg", "width": 40, "height": 60}],
           "categories": [{"id": i + 1, "name": n} for i, n in enumerate(labels)], "annotations": anns}
    path = tmp_path_factory.mktemp("modanet") / "ann.json"
    path.write_text(json.dumps(doc))
    try:
        dicts, _ = load_modanet(path, path.parent)
    except ValueError as exc:
        assert "ann.json" in str(exc)
    else:
        for rec in dicts:
            for a in rec["annotations"]:
                x0, y0, x1, y1 = a["bbox"]
                assert 0 <= x0 < x1 <= 40 and 0 <= y0 < y1 <= 60
