"""Recipes: the models of an experiment as data (``detret/resources/recipes/*.yaml``, or a file of yours).

A recipe names each model of a run directory with how it is trained (its loss, whether shop photos
are cropped, and ``retrieval.train`` keys over the pipeline config's), the ensembles made of them,
and, for a published experiment, the published numbers. The paper's Table 1 (``paper.yaml``) and
the five seed systems (``seeds.yaml``) ship with detret; ``detret demo --recipe FILE`` runs one of
yours. Format::

    name: <recipe name>                 # the evaluation folder of a recipe other than the paper's: eval-<name>
    title: <one line>
    models:
      <run name>: {loss: <registered loss>, shop_crops: detected | full, train: {<retrieval.train key>: value},
                   column: <table column>, paper: <who>, method: <what>, published: {<metric>: <%>}}
    descriptors:                        # foundation models used without training (detret embed --descriptor)
      <run name>: {descriptor: open_clip:... | timm:... | hf:..., weights: <file or folder, relative to the
                   recipe file; default the Hugging Face cache>, shop_crops: detected | full, column, method}
    ensembles:
      <run name>: {members: [<run>, ...], published: {...}}
    whiten: {runs: [<run>, ...], method: lw | pca, reduce: <d / d'>}   # runs <run>-<method> (detret whiten)
    rerank: {run: <run>, methods: [<registered re-ranking>, ...]}
    deepfashion2: [<run>, ...]

Read here: the shape, the keys (a ``train`` key must be a ``retrieval.train`` key of the pipeline
config), the choices (``shop_crops``) and the references between runs, each error naming the file and
the key. The loss and the blocks a model's settings name are checked by the demo before it trains
anything, against the registries (``detret.retrieval.train.check_blocks``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from ..errors import InputError
from .choices import ShopCrops, WhitenMethod, check_choice, check_foundation_name

RECIPES_DIR = Path(__file__).resolve().parents[1] / "resources" / "recipes"
TOP_KEYS = {"name", "title", "models", "descriptors", "ensembles", "whiten", "rerank", "deepfashion2"}
DESCRIPTOR_KEYS = {"descriptor", "weights", "shop_crops", "column", "method"}
WHITEN_KEYS = {"runs", "method", "reduce"}
MODEL_KEYS = {"loss", "shop_crops", "train", "column", "paper", "method", "published"}
ENSEMBLE_KEYS = {"members", "published"}


@dataclass(frozen=True)
class ModelRecipe:
    name: str                                  # run name: retrieval-<name>, embed-<name>, ...
    loss: str                                  # train-retrieval --loss
    shop_crops: str                            # detected | full
    train: Dict[str, Any] = field(default_factory=dict)  # retrieval.train keys over the pipeline config's
    column: str = ""                           # the table's column (the paper's name), default the run name
    paper: str = ""                            # who
    method: str = ""                           # what, in a few words
    published: Dict[str, float] = field(default_factory=dict)

    def options(self) -> List[str]:
        """The ``--set`` overrides that give this model's config."""
        return [f"retrieval.train.{k}={v}" for k, v in self.train.items()]


@dataclass(frozen=True)
class DescriptorRecipe:
    """A foundation model as a run of the recipe, without training: ``embed --descriptor``."""

    name: str                                  # run name: embed-<name>, ...
    descriptor: str                            # open_clip:..., timm:..., hf:...
    weights: Optional[Path] = None             # a local file or folder; None: the Hugging Face cache
    shop_crops: str = "detected"
    column: str = ""
    method: str = ""


@dataclass(frozen=True)
class EnsembleRecipe:
    name: str
    members: Tuple[str, ...]
    published: Dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class WhitenRecipe:
    """Runs whitened (``detret whiten``) and reduced ``reduce`` times: each a run ``<run>-<method>``."""

    runs: Tuple[str, ...]
    method: str = "lw"
    reduce: int = 8

    def name(self, run: str) -> str:
        return f"{run}-{self.method}"


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    source: str
    models: Tuple[ModelRecipe, ...]
    ensembles: Tuple[EnsembleRecipe, ...] = ()
    rerank_run: Optional[str] = None
    rerank_methods: Tuple[str, ...] = ()
    deepfashion2: Tuple[str, ...] = ()
    whiten: Optional[WhitenRecipe] = None
    descriptors: Tuple[DescriptorRecipe, ...] = ()

    def whitened(self) -> Tuple[Tuple[str, str], ...]:
        """(source run, whitened run) of each run the recipe whitens."""
        return tuple((r, self.whiten.name(r)) for r in self.whiten.runs) if self.whiten else ()

    def columns(self) -> Tuple[str, ...]:
        """The runs of its table, in order: the models, the foundation descriptors, the ensembles, the whitened
        runs."""
        return tuple(m.name for m in self.models) + tuple(d.name for d in self.descriptors) + \
            tuple(e.name for e in self.ensembles) + tuple(w for _, w in self.whitened())

    def published(self) -> Dict[str, Dict[str, float]]:
        """run -> {metric: %} where the recipe gives published numbers."""
        runs = list(self.models) + list(self.ensembles)
        return {r.name: dict(r.published) for r in runs if r.published}


def _mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _known(obj: Mapping, allowed: set, where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r} (one of {', '.join(sorted(allowed))})")


def _model(name: str, spec: Any, source: str, train_keys: set) -> ModelRecipe:
    where = f"{source}: models.{name}"
    spec = _mapping(spec, where)
    _known(spec, MODEL_KEYS, where)
    for key in ("loss", "shop_crops"):
        if not isinstance(spec.get(key), str):
            raise InputError(f"{where}: {key} is required (a name)")
    check_choice(spec["shop_crops"], ShopCrops, f"{where}.shop_crops")
    train = dict(_mapping(spec.get("train") or {}, f"{where}.train"))
    for key in train:
        if key not in train_keys:
            raise InputError(f"{where}.train: {key!r} is not a retrieval.train key (`detret config keys`)")
    return ModelRecipe(name, spec["loss"], spec["shop_crops"], train, str(spec.get("column") or name),
                       str(spec.get("paper", "")), str(spec.get("method", "")),
                       {str(k): float(v) for k, v in _mapping(spec.get("published") or {}, where).items()})


def _descriptor(name: str, spec: Any, source: str) -> DescriptorRecipe:
    where = f"{source}: descriptors.{name}"
    spec = _mapping(spec, where)
    _known(spec, DESCRIPTOR_KEYS, where)
    check_foundation_name(str(spec.get("descriptor", "")), f"{where}.descriptor")
    crops = str(spec.get("shop_crops", "detected"))
    check_choice(crops, ShopCrops, f"{where}.shop_crops")
    weights = spec.get("weights")
    weights = None if weights in (None, "") else (Path(source).parent / str(weights)).resolve()
    return DescriptorRecipe(name, str(spec["descriptor"]), weights, crops, str(spec.get("column") or name),
                            str(spec.get("method", "")))


def _ensemble(name: str, spec: Any, source: str, runs: set) -> EnsembleRecipe:
    where = f"{source}: ensembles.{name}"
    spec = _mapping(spec, where)
    _known(spec, ENSEMBLE_KEYS, where)
    members = spec.get("members")
    if not isinstance(members, list) or len(members) < 2 or any(m not in runs for m in members):
        raise InputError(f"{where}: members must list two or more of the recipe's runs ({', '.join(sorted(runs))})")
    return EnsembleRecipe(name, tuple(members),
                          {str(k): float(v) for k, v in _mapping(spec.get("published") or {}, where).items()})


def _whiten(spec: Any, source: str, runs: set) -> Optional[WhitenRecipe]:
    if not spec:
        return None
    where = f"{source}: whiten"
    spec = _mapping(spec, where)
    _known(spec, WHITEN_KEYS, where)
    listed = spec.get("runs")
    if not isinstance(listed, list) or not listed or any(r not in runs for r in listed):
        raise InputError(f"{where}.runs must list one or more of the recipe's runs ({', '.join(sorted(runs))})")
    method = str(spec.get("method", "lw"))
    check_choice(method, WhitenMethod, f"{where}.method:")
    reduce = spec.get("reduce", 8)
    if not isinstance(reduce, int) or reduce < 1:
        raise InputError(f"{where}.reduce must be a whole number >= 1 (d / d'), got {reduce!r}")
    return WhitenRecipe(tuple(str(r) for r in listed), method, reduce)


def parse_recipe(obj: Any, source: str) -> Recipe:
    """A recipe from its YAML content; InputError naming `source` and the key for anything wrong."""
    from .pipeline import valid_keys

    obj = _mapping(obj, source)
    _known(obj, TOP_KEYS, source)
    models_spec = _mapping(obj.get("models") or {}, f"{source}: models")
    descriptors = tuple(_descriptor(str(n), s, source)
                        for n, s in _mapping(obj.get("descriptors") or {}, f"{source}: descriptors").items())
    if not models_spec and not descriptors:
        raise InputError(f"{source}: models is required (at least one model, or a descriptor)")
    train_keys = {k.split(".", 2)[2] for k in valid_keys() if k.startswith("retrieval.train.")}
    models = tuple(_model(str(n), s, source, train_keys) for n, s in models_spec.items())
    runs = {m.name for m in models}
    clash = runs & {d.name for d in descriptors}
    if clash:
        raise InputError(f"{source}: {sorted(clash)[0]!r} is both a model and a descriptor")
    runs |= {d.name for d in descriptors}
    ensembles = tuple(_ensemble(str(n), s, source, runs)
                      for n, s in _mapping(obj.get("ensembles") or {}, f"{source}: ensembles").items())
    runs |= {e.name for e in ensembles}
    whiten = _whiten(obj.get("whiten"), source, runs)
    runs |= {w for w in (whiten.name(r) for r in whiten.runs)} if whiten else set()
    rerank = _mapping(obj.get("rerank") or {}, f"{source}: rerank")
    if rerank and rerank.get("run") not in runs:
        raise InputError(f"{source}: rerank.run must be one of the recipe's runs, got {rerank.get('run')!r}")
    df2 = tuple(obj.get("deepfashion2") or ())
    if any(r not in runs for r in df2):
        raise InputError(f"{source}: deepfashion2 must list the recipe's runs, got {list(df2)}")
    return Recipe(str(obj.get("name") or Path(source).stem), str(obj.get("title", "")), source, models, ensembles,
                  rerank.get("run"), tuple(rerank.get("methods") or ()), df2, whiten, descriptors)


def load_recipe(recipe: str | Path) -> Recipe:
    """A shipped recipe by name (``paper``, ``seeds``) or a recipe file."""
    path = RECIPES_DIR / f"{recipe}.yaml" if (RECIPES_DIR / f"{recipe}.yaml").is_file() else Path(recipe)
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
        raise InputError(f"recipe {str(recipe)!r}: no such file, and not a shipped recipe ({shipped})")
    try:
        obj = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from exc
    return parse_recipe(obj, str(path))


@functools.lru_cache(maxsize=None)
def paper() -> Recipe:
    """The paper's Table 1 (``paper.yaml``)."""
    return load_recipe("paper")


def default_model_name(loss: str, shop_crops: str) -> str:
    """The run name of a train-retrieval run: Table 1's name for (loss, shop crops), e.g. "ap-full";
    for another loss, "<loss>-full" or "<loss>-crops"."""
    named = [m.name for m in paper().models if m.loss == loss and m.shop_crops == shop_crops and not m.train]
    return named[0] if named else f"{loss}-{'crops' if shop_crops == ShopCrops.DETECTED else 'full'}"
