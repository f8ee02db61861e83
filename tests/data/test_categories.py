import pytest

from detret.data.categories import load_categories


def test_packaged_vocabularies():
    cats = load_categories()
    assert len(cats.modanet) == 13 and cats.modanet[0] == "bag" and cats.modanet[12] == "scarf/tie"
    assert len(cats.street2shop) == 11 and len(cats.deepfashion2) == 13
    assert cats.detector_labels_for("footwear") == ("footwear", "boots")
    assert cats.detector_labels_for("eyewear") == ("sunglasses",)
    assert cats.detector_labels_for("leggings") == ("pants",)
    assert cats.detector_labels_for("trousers", "deepfashion2") == ("pants",)
    assert cats.modanet_index("top") == 8


def test_unknown_names_list_known_ones():
    cats = load_categories()
    with pytest.raises(KeyError, match="known: bags"):
        cats.detector_labels_for("socks")
    with pytest.raises(KeyError, match="known: bag"):
        cats.modanet_index("hat")


def test_user_map_is_validated(tmp_path):
    text = load_categories.__globals__["resources"].files("detret.resources").joinpath("categories.yaml").read_text()
    edited = tmp_path / "map.yaml"
    edited.write_text(text.replace("eyewear: [sunglasses]", "eyewear: [sunglasses, headwear]"))
    assert load_categories(edited).detector_labels_for("eyewear") == ("sunglasses", "headwear")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("eyewear: [sunglasses]", "eyewear: [goggles]"))
    with pytest.raises(ValueError, match=r"bad.yaml.*eyewear.*goggles"):
        load_categories(bad)
    missing = tmp_path / "missing.yaml"
    missing.write_text(text.replace("  eyewear: [sunglasses]\n", ""))
    with pytest.raises(ValueError, match="missing \\['eyewear'\\]"):
        load_categories(missing)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_categories(tmp_path / "nope.yaml")
