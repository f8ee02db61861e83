"""Exact Street2Shop loader on the real annotation files and their quirks."""
import json
from collections import Counter, defaultdict

import pytest

from detret.data.street2shop import load_street2shop

OFFICIAL_TEST_COUNTS = {"bags": 174, "belts": 89, "dresses": 3292, "eyewear": 138, "footwear": 2178, "hats": 86,
                        "leggings": 517, "outerwear": 666, "pants": 130, "skirts": 604, "tops": 763}
SMALL_CATS = ("bags", "belts", "eyewear", "hats", "pants")  # the fixture has their train pairs


@pytest.fixture(scope="module")
def s2s(realdata):
    return load_street2shop(realdata / "street2shop", categories=SMALL_CATS)


def test_official_test_query_counts(realdata):
    data = load_street2shop(realdata / "street2shop", splits=("test",))
    assert Counter(q.category for q in data.test_queries) == OFFICIAL_TEST_COUNTS
    assert len(data.test_queries) == 8637
    assert data.report.queries_without_positive == {"test": 0}
    with pytest.raises(ValueError, match="train pairs .* were not loaded"):
        data.queries("train")


def test_float_boxes_become_xyxy(s2s, realdata):
    raw = json.loads((realdata / "street2shop/meta/json/test_pairs_bags.json").read_text())
    floats = [i for i, r in enumerate(raw) if any(isinstance(v, float) for v in r["bbox"].values())]
    assert floats
    q = next(q for q in s2s.test_queries if q.category == "bags" and q.record == floats[0])
    b = raw[floats[0]]["bbox"]
    assert q.box_xyxy == (b["left"], b["top"], b["left"] + b["width"], b["top"] + b["height"])
    assert s2s.report.float_boxes == sum(
        any(isinstance(v, float) for v in r["bbox"].values())
        for c in SMALL_CATS for s in ("train", "test")
        for r in json.loads((realdata / f"street2shop/meta/json/{s}_pairs_{c}.json").read_text()))


def test_zero_size_box_is_kept_without_box(s2s):
    zero = [q for q in s2s.train_queries if q.photo_id == 8288 and q.product_id == 4916]
    assert len(zero) == 1 and zero[0].box_xyxy is None
    assert s2s.report.zero_size_boxes == 1


def test_repeated_boxes_are_separate_queries(s2s):
    by_pair = defaultdict(list)
    for q in s2s.train_queries + s2s.test_queries:
        by_pair[(q.category, q.photo_id, q.product_id)].append(q)
    repeated = [v for v in by_pair.values() if len(v) > 1]
    assert repeated
    assert sum(len(v) - 1 for v in repeated) == s2s.report.repeated_boxes
    for group in repeated:
        assert len({q.record for q in group}) == len(group)


def test_multi_category_photos_and_split_disjointness(s2s):
    cats_of = defaultdict(set)
    for q in s2s.train_queries + s2s.test_queries:
        cats_of[q.photo_id].add(q.category)
    assert s2s.report.multi_category_street_photos == sum(len(v) > 1 for v in cats_of.values()) > 0
    # Within a category, train and test share no product and no street photo ...
    assert not {(q.category, q.product_id) for q in s2s.train_queries} & \
        {(q.category, q.product_id) for q in s2s.test_queries}
    assert not {(q.category, q.photo_id) for q in s2s.train_queries} & \
        {(q.category, q.photo_id) for q in s2s.test_queries}
    # ... but product ids are numbered per category, and one street photo can be a train
    # photo of one category and a test photo of another: keys must carry the category.
    assert {q.product_id for q in s2s.train_queries} & {q.product_id for q in s2s.test_queries}
    assert {q.photo_id for q in s2s.train_queries} & {q.photo_id for q in s2s.test_queries}


def test_positives_are_the_products_shop_photos(s2s, realdata):
    raw = json.loads((realdata / "street2shop/meta/json/retrieval_hats.json").read_text())
    shop = defaultdict(set)
    for r in raw:
        shop[r["product"]].add(r["photo"])
    for q in (q for q in s2s.test_queries if q.category == "hats"):
        assert set(s2s.positives(q)) == shop[q.product_id] and shop[q.product_id]
    assert len(s2s.gallery["hats"]) == len({r["photo"] for r in raw})
    assert s2s.photo_path(4534).name == "000004534.jpg"


def _write(root, cat, retrieval, train, test):
    meta = root / "meta" / "json"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / f"retrieval_{cat}.json").write_text(json.dumps(retrieval))
    (meta / f"train_pairs_{cat}.json").write_text(json.dumps(train))
    (meta / f"test_pairs_{cat}.json").write_text(json.dumps(test))


def _box(left=1, top=2, width=3, height=4):
    return {"left": left, "top": top, "width": width, "height": height}


def test_product_without_gallery_photo_and_missing_photos(tmp_path):
    _write(tmp_path, "hats",
           retrieval=[{"photo": 10, "product": 1}, {"photo": 10, "product": 1}, {"photo": 11, "product": 1}],
           train=[{"photo": 1, "product": 1, "bbox": _box()}],
           test=[{"photo": 2, "product": 1, "bbox": _box()}, {"photo": 3, "product": 9, "bbox": _box()}])
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "000000010.jpg").write_bytes(b"x")
    data = load_street2shop(tmp_path, categories=["hats"])
    no_pos = [q for q in data.test_queries if not data.positives(q)]
    assert [q.product_id for q in no_pos] == [9]
    assert data.report.queries_without_positive == {"train": 0, "test": 1}
    assert data.report.repeated_gallery_records == 1
    assert [s.photo_id for s in data.gallery["hats"]] == [10, 11]
    assert data.missing_photos(data.all_photo_ids()) == [1, 2, 3, 11]


@pytest.mark.parametrize("record, message", [
    ({"photo": "12", "product": 1, "bbox": _box()}, r"record 0: 'photo' must be an integer"),
    ({"photo": 12.5, "product": 1, "bbox": _box()}, r"record 0: 'photo' must be an integer"),
    ({"product": 1, "bbox": _box()}, r"record 0: 'photo'"),
    ({"photo": 1, "product": 1, "bbox": {"left": 1, "top": 2, "width": 3}}, r"record 0: 'bbox' must have"),
    ({"photo": 1, "product": 1, "bbox": _box(width="3")}, r"record 0: bbox 'width' must be a number"),
    ("not a record", r"record 0"),
])
def test_malformed_records_name_file_and_record(tmp_path, record, message):
    _write(tmp_path, "hats", retrieval=[{"photo": 10, "product": 1}], train=[], test=[record])
    with pytest.raises(ValueError, match=message) as err:
        load_street2shop(tmp_path, categories=["hats"])
    assert "test_pairs_hats.json" in str(err.value)


def test_bad_files_and_names(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta/json"):
        load_street2shop(tmp_path)
    _write(tmp_path, "hats", retrieval=[], train=[], test=[])
    (tmp_path / "meta/json/test_pairs_hats.json").write_text("{broken")
    with pytest.raises(ValueError, match="test_pairs_hats.json: not valid JSON"):
        load_street2shop(tmp_path, categories=["hats"])
    (tmp_path / "meta/json/test_pairs_hats.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="expected a JSON list"):
        load_street2shop(tmp_path, categories=["hats"])
    with pytest.raises(FileNotFoundError, match="retrieval_bags.json"):
        load_street2shop(tmp_path, categories=["bags"])
    with pytest.raises(KeyError, match="socks.*known: bags"):
        load_street2shop(tmp_path, categories=["socks"])


def test_synthetic_dataset_loads(synth_small):
    out, cfg, summary = synth_small
    data = load_street2shop(out / "street2shop")
    assert len(data.test_queries) == sum(r["test_pairs"] for r in summary["street2shop"].values())
    assert data.report.queries_without_positive == {"train": 0, "test": 0}
    assert data.missing_photos(data.all_photo_ids()) == []
    assert all(q.box_xyxy is not None for q in data.test_queries)


def test_shop_photo_listed_for_two_products_shows_both(tmp_path):
    """An outfit shot listed for products 1 and 2 of one category: one gallery row, a positive for each."""
    _write(tmp_path, "tops",
           retrieval=[{"photo": 10, "product": 1}, {"photo": 10, "product": 2}, {"photo": 11, "product": 2}],
           train=[{"photo": 1, "product": 1, "bbox": _box()}],
           test=[{"photo": 2, "product": 1, "bbox": _box()}, {"photo": 3, "product": 2, "bbox": _box()}])
    data = load_street2shop(tmp_path, categories=["tops"])
    assert [(s.photo_id, s.products) for s in data.gallery["tops"]] == [(10, (1, 2)), (11, (2,))]
    assert data.report.repeated_gallery_records == 0
    for q in data.test_queries:  # the gallery rows agree with positives(): each photo listed for the product
        assert set(data.positives(q)) == {s.photo_id for s in data.gallery["tops"] if q.product_id in s.products}
