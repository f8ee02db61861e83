"""The steps of a recipe's models (``detret.config.recipes``): train each model with its settings,
embed it, build the ensembles, search every run, re-rank where the recipe says, in that order (a
model whose settings start from another, ``init_from``, comes after it in the recipe).

The paper's recipe is the demo's main table (``eval/``, with DeepFashion2's view and the report); any
other recipe (the seed systems, one of yours) is trained on the same detector and crops and evaluated
into ``eval-<name>/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from ..config.pipeline import check_choices
from ..config.recipes import DescriptorRecipe, ModelRecipe, Recipe, default_model_name
from ..detect.masks import CropShape
from ..runs.layout import RERANKED, RunLayout
from .steps import Step

MAIN_RECIPE = "paper"  # the recipe whose table is eval/ (the paper's Table 1)


def is_main(recipe: Recipe) -> bool:
    return recipe.name == MAIN_RECIPE


def eval_out_name(recipe: Recipe) -> Optional[str]:
    """``eval --out-name`` of the recipe's evaluation: None (``eval/``) for the paper's, ``eval-<name>`` else."""
    return None if is_main(recipe) else f"eval-{recipe.name}"


def eval_folder(layout: RunLayout, recipe: Recipe) -> Path:
    """Where the recipe's evaluation is written."""
    out_name = eval_out_name(recipe)
    return layout.eval if out_name is None else layout.run_dir / out_name


def reranked_columns(recipe: Recipe) -> Tuple[str, ...]:
    return tuple(f"{recipe.rerank_run}{RERANKED}{m}" for m in recipe.rerank_methods)


def evaluated_runs(recipe: Recipe) -> Tuple[str, ...]:
    """The columns of the recipe's table: its runs, then the re-ranked ones."""
    return recipe.columns() + reranked_columns(recipe)


def model_config(pcfg: DictConfig, model: ModelRecipe) -> DictConfig:
    """The pipeline config with the model's retrieval.train keys, checked as a config file's."""
    if not model.train:
        return pcfg
    cfg = OmegaConf.merge(pcfg, {"retrieval": {"train": dict(model.train)}})
    check_choices(cfg, source=f"{model.name} of the recipe")
    return cfg


def crop_of(model: ModelRecipe) -> CropShape:
    """How the model's crops are cut, in training and when it embeds (``train: {crop: mask}``)."""
    return CropShape(str(model.train.get("crop", "box")), str(model.train.get("mask_fill", "white")))


def needs_training_masks(recipe: Recipe) -> bool:
    """Whether a model trains on mask crops (then the training street photos are detected too)."""
    return any(crop_of(m).shape == "mask" for m in recipe.models)


def check_recipe(recipe: Recipe, pcfg: DictConfig) -> None:
    """Every model's settings, loss and blocks, and every re-ranking, against the registries: an invalid
    combination is refused before anything is trained."""
    from ..retrieval.train import check_blocks
    from ..search.rerank import RERANKERS

    for model in recipe.models:
        check_blocks(model.loss, model_config(pcfg, model).retrieval.train)
    for method in recipe.rerank_methods:
        RERANKERS.get(method, f"{recipe.source}: rerank.methods")
    for d in recipe.descriptors:   # its weights are found (or fetched) before anything is trained
        from ..retrieval.foundation import FoundationSpec
        from ..retrieval.foundation.sources import locate

        locate(FoundationSpec.parse(d.descriptor), d.weights)


def _train_step(prefix: str, layout: RunLayout, m: ModelRecipe) -> Step:
    from ..retrieval.train import run_train_retrieval

    sets = "".join(f" --set {o}" for o in m.options())
    name = "" if m.name == default_model_name(m.loss, m.shop_crops) else f" --name {m.name}"
    return Step(f"train {m.name}" + (f" ({m.paper}: {m.method})" if m.paper else ""),
                f"{prefix}{sets} train-retrieval --loss {m.loss} --shop-crops {m.shop_crops}{name}",
                layout.retrieval(m.name),
                lambda c, cmd, f: run_train_retrieval(model_config(c, m), m.loss, m.shop_crops, name=m.name,
                                                      command=cmd, force=f))


def model_steps(recipe: Recipe, prefix: str, layout: RunLayout, search_k: int) -> List[Step]:
    """Train and embed the recipe's models, build its ensembles, whiten, search every run, re-rank."""
    from ..embed.combine import run_combine
    from ..embed.stage import run_embed
    from ..search.rerank import Rerank
    from ..search.stage import run_search

    steps = [_train_step(prefix, layout, m) for m in recipe.models]
    steps += [_descriptor_step(prefix, layout, d) for d in recipe.descriptors]
    steps += [Step(f"embed {m.name}", f"{prefix} embed -m {m.name} --gallery-crops {m.shop_crops}"
                   + (f" --crop mask --mask-fill {crop_of(m).fill}" if crop_of(m).shape == "mask" else ""),
                   layout.embed(m.name),
                   lambda c, cmd, f, m=m: run_embed(c, models=[m.name], gallery_crops=m.shop_crops, command=cmd,
                                                    force=f, crop=crop_of(m)))
              for m in recipe.models]
    steps += [Step(f"ensemble {e.name}", f"{prefix} combine {' '.join(e.members)} --name {e.name}", layout.embed(e.name),
                   lambda c, cmd, f, e=e: run_combine(c, list(e.members), e.name, command=cmd, force=f))
              for e in recipe.ensembles]
    steps += _whiten_steps(recipe, prefix, layout)
    steps += [Step(f"search {name}", f"{prefix} search {name} --k {search_k}", layout.search(name),
                   lambda c, cmd, f, n=name: run_search(c, n, k=search_k, command=cmd, force=f))
              for name in recipe.columns()]
    steps += [Step(f"re-rank {name}", f"{prefix} search {recipe.rerank_run} --k {search_k} --rerank {method}",
                   layout.search(name), lambda c, cmd, f, m=method: run_search(
                       c, recipe.rerank_run, k=search_k, rerank=Rerank(method=m), command=cmd, force=f))
              for name, method in zip(reranked_columns(recipe), recipe.rerank_methods)]
    return steps


def _descriptor_step(prefix: str, layout: RunLayout, d: DescriptorRecipe) -> Step:
    """Embed a foundation model of the recipe (no training)."""
    from ..embed.stage import run_embed

    weights = f" --weights {d.weights}" if d.weights else ""
    return Step(f"embed {d.name} ({d.descriptor}, no training)",
                f"{prefix} embed --descriptor {d.descriptor}{weights} --name {d.name} --gallery-crops {d.shop_crops}",
                layout.embed(d.name),
                lambda c, cmd, f: run_embed(c, models=[d.descriptor], weights=d.weights, name=d.name,
                                            gallery_crops=d.shop_crops, command=cmd, force=f))


def _whiten_steps(recipe: Recipe, prefix: str, layout: RunLayout) -> List[Step]:
    from ..embed.whiten import run_whiten

    w = recipe.whiten
    return [Step(f"whiten {run}", f"{prefix} whiten {run} --method {w.method} --reduce {w.reduce} --name {name}",
                 layout.embed(name), lambda c, cmd, f, run=run, name=name: run_whiten(
                     c, run, method=w.method, reduce=w.reduce, name=name, command=cmd, force=f))
            for run, name in recipe.whitened()]
