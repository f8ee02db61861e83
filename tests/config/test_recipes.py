"""Recipes: the paper's Table 1 and the seed systems as data, and what a recipe file may not say."""
import pytest

from detret.config.recipes import default_model_name, load_recipe, paper, parse_recipe
from detret.errors import InputError


def test_the_papers_recipe_is_table_1():
    recipe = paper()
    assert [m.name for m in recipe.models] == ["tri-full", "tri-crops", "ap-full", "ap-crops", "ap-masks"]
    assert [m.column for m in recipe.models] == ["Tri DB F", "Tri DB C", "mAP DB F", "mAP DB C", "mAP DB M"]
    assert [(m.loss, m.shop_crops) for m in recipe.models] == [("triplet", "full"), ("triplet", "detected"),
                                                               ("ap", "full"), ("ap", "detected"), ("ap", "detected")]
    assert recipe.models[-1].train == {"crop": "mask"}   # (not in the paper: mask crops)
    assert recipe.columns() == ("tri-full", "tri-crops", "ap-full", "ap-crops", "ap-masks", "Tris", "mAPs", "Fulls",
                                "Crops", "tri-crops-lw", "Crops-lw")   # (not in the paper: whitened, reduced 8x)
    assert recipe.whitened() == (("tri-crops", "tri-crops-lw"), ("Crops", "Crops-lw"))
    assert (recipe.whiten.method, recipe.whiten.reduce) == ("lw", 8)
    assert {e.name: e.members for e in recipe.ensembles}["Crops"] == ("tri-crops", "ap-crops")
    # the published means (Kucer & Murray 2019, Table 1): Crops is the paper's best, 29.67 mAP
    assert recipe.published()["Crops"] == {"mAP": 29.67, "Acc@1": 34.42, "Acc@20": 60.36}
    assert max(recipe.published(), key=lambda r: recipe.published()[r]["mAP"]) == "Crops"
    assert default_model_name("triplet", "detected") == "tri-crops" and default_model_name("ap", "full") == "ap-full"
    assert default_model_name("npair", "detected") == "npair-crops"


def test_the_seed_systems_recipe():
    seeds = load_recipe("seeds")
    by_name = {m.name: m for m in seeds.models}
    assert list(by_name)[:3] == ["tri-crops", "ap-crops", "gajic-shared"]
    assert list(by_name).index("gajic-ss") > list(by_name).index("gajic-shared")  # init_from comes first
    assert by_name["gajic-ss"].train["init_from"] == "gajic-shared"
    assert by_name["npair"].options() == ["retrieval.train.sampler=pk", "retrieval.train.pk_products=30",
                                          "retrieval.train.pk_photos=2"]
    assert all(m.shop_crops == "detected" for m in seeds.models)


@pytest.mark.parametrize("recipe, message", [
    ({"models": {}}, "models is required"),
    ({"models": {"a": {"loss": "triplet"}}}, "models.a: shop_crops is required"),
    ({"models": {"a": {"loss": "triplet", "shop_crops": "cropped"}}}, "shop_crops 'cropped' is not one of"),
    ({"models": {"a": {"loss": "triplet", "shop_crops": "full", "train": {"poolng": "mac"}}}},
     "models.a.train: 'poolng' is not a retrieval.train key"),
    ({"models": {"a": {"loss": "ap", "shop_crops": "full", "colour": 1}}}, "models.a: unknown key 'colour'"),
    ({"models": {"a": {"loss": "ap", "shop_crops": "full"}}, "ensembles": {"E": {"members": ["a", "b"]}}},
     "ensembles.E: members must list two or more of the recipe's runs"),
    ({"models": {"a": {"loss": "ap", "shop_crops": "full"}}, "rerank": {"run": "E", "methods": ["aqe"]}},
     "rerank.run must be one of the recipe's runs"),
    ({"modles": {}}, "unknown key 'modles'"),
    ({"models": {"a": {"loss": "ap", "shop_crops": "full"}}, "whiten": {"runs": ["b"]}},
     "whiten.runs must list one or more of the recipe's runs"),
    ({"models": {"a": {"loss": "ap", "shop_crops": "full"}}, "whiten": {"runs": ["a"], "method": "zca"}},
     "whiten.method: 'zca' is not one of lw, pca"),
    ({"models": {"a": {"loss": "ap", "shop_crops": "full"}}, "whiten": {"runs": ["a"], "reduce": 0}},
     "whiten.reduce must be a whole number >= 1"),
])
def test_a_bad_recipe_is_refused_naming_the_file_and_the_key(recipe, message):
    with pytest.raises(InputError, match=message):
        parse_recipe(recipe, "mine.yaml")


def test_a_recipe_file_of_yours_loads(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nmodels:\n  g: {loss: triplet, shop_crops: detected, train: {pooling: mac}}\n")
    recipe = load_recipe(path)
    assert recipe.name == "mine" and recipe.models[0].train == {"pooling": "mac"}
    with pytest.raises(InputError, match="no such file, and not a shipped recipe \\(paper, seeds, zero-shot\\)"):
        load_recipe(tmp_path / "missing.yaml")
