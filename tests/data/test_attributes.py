"""The per-product attribute file: what the generator writes, what the loader reads, malformed files."""
import pytest

from detret.data.attributes import ProductAttributes, load_attributes, write_attributes
from detret.errors import InputError


def test_written_attributes_read_back_as_classes(tmp_path):
    rows = {("tops", 3): {"colour": "#ff0000", "pattern": "plain"}, ("bags", 1): {"colour": "#00ff00"},
            ("tops", 1): {"colour": "#ff0000", "pattern": "dots, big"}}
    write_attributes(tmp_path / "a.csv", rows, ["colour", "pattern"])
    text = (tmp_path / "a.csv").read_text()
    assert text.splitlines()[0] == "category,product,colour,pattern"
    assert text.splitlines()[1] == "bags,1,#00ff00,"  # sorted products; an unknown value is an empty cell
    attrs = load_attributes(tmp_path / "a.csv")
    assert attrs.values == {"colour": ["#00ff00", "#ff0000"], "pattern": ["dots, big", "plain"]}
    assert attrs.classes(("tops", 3)) == [1, 1] and attrs.classes(("bags", 1)) == [0, -1]
    assert attrs.classes(("hats", 9)) == [-1, -1]  # a product not in the file


@pytest.mark.parametrize("text, error", [
    ("product,category,colour\n", r"a\.csv:1: the header must be category,product"),
    ("category,product\n", r"a\.csv:1: the header must be"),
    ("category,product,colour\ntops,x,#fff\n", r"a\.csv:2: product 'x' is not an integer id"),
    ("category,product,colour\ntops,1\n", r"a\.csv:2: 2 cells, the header has 3"),
    ("category,product,colour\ntops,1,a\ntops,1,b\n", r"a\.csv:3: product \('tops', 1\) listed twice"),
])
def test_malformed_attribute_files_name_file_and_line(tmp_path, text, error):
    (tmp_path / "a.csv").write_text(text)
    with pytest.raises(InputError, match=error):
        load_attributes(tmp_path / "a.csv")


def test_a_missing_file_says_how_to_train_without(tmp_path):
    with pytest.raises(InputError, match="attribute_weight: 0"):
        load_attributes(tmp_path / "none.csv")


def test_the_generator_writes_each_products_look(tmp_path):
    from detret.data.attributes import attributes_path
    from detret.data.street2shop import load_street2shop
    from detret.data.synth.generate import SynthConfig, generate, make_catalogue, product_attributes

    cfg = SynthConfig(seed=5, n_products=12, n_distractors=2, n_modanet_train=1, n_modanet_val=1)
    generate(cfg, tmp_path)
    attrs: ProductAttributes = load_attributes(attributes_path(tmp_path / "street2shop"))
    data = load_street2shop(tmp_path / "street2shop")
    gallery_products = {(c, p) for c in data.categories for s in data.gallery[c] for p in s.products}
    assert set(attrs.labels) == gallery_products
    from detret.data.categories import load_categories

    for p in make_catalogue(cfg, load_categories().street2shop):
        look = p.spec.look
        expected = product_attributes(p.spec)
        assert expected["colour"] == "#%02x%02x%02x" % look.base_rgb and expected["badge"] == look.badge
        got = attrs.labels[(p.category, p.product_id)]
        assert {n: attrs.values[n][c] for n, c in got.items()} == expected
