"""`detret demo --profile seeds`: the five seed systems in miniature, on the same crops and protocol.

One configuration per system, each a set of ``retrieval.train`` keys over the demo's own (ResNet-18
from scratch at 128 px, two epochs: the demo's budget), trained on the shop crops of the demo's
detector, embedded, searched within category and evaluated in Table 1's layout
(``<run_dir>/eval-seeds/``), with a reading that sets each system's result beside its paper's claim.
The detector and the crops, and Kucer & Murray's two runs, are those of the default demo: a seeds
demo after ``detret demo`` trains only the other systems.

What each system keeps of its paper is the method (pooling, loss, batches, streams, heads); the
optimisation (backbone, input size, epochs, learning rate) is the demo's, so that the comparison
is the method's. README "Methods" gives the settings that reproduce each paper at full scale.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from ..config.pipeline import check_choices
from ..evaluate.paired import Comparison
from ..evaluate.reading import NOISE, UNTESTED, Comparer, Finding, conclusion, reading_markdown
from .steps import Step

CROPS = "detected"  # every system trains on, and searches, the detector's shop crops


@dataclass(frozen=True)
class SeedSystem:
    name: str                      # run name (retrieval-<name>, embed-<name>, ...)
    paper: str                     # who
    method: str                    # what, in a few words
    loss: str                      # train-retrieval --loss
    train: Dict[str, Any] = field(default_factory=dict)  # retrieval.train keys over the demo's

    def options(self) -> List[str]:
        """The ``--set`` overrides that give this system's config."""
        return [f"retrieval.train.{k}={v}" for k, v in self.train.items()]


SEED_SYSTEMS: Tuple[SeedSystem, ...] = (
    SeedSystem("tri-crops", "Kucer & Murray 2019", "GeM, triplet, mined negatives", "triplet"),
    SeedSystem("ap-crops", "Kucer & Murray 2019", "GeM, AP loss (listwise)", "ap"),
    SeedSystem("gajic-shared", "Gajic & Baldrich 2018", "MAC, triplet, 25 nearest negatives", "triplet",
               {"pooling": "mac", "mine_k": 25}),
    # SS at half the shared model's learning rate, as the paper (1e-3 -> 5e-4); the demo's rate is 3e-4.
    SeedSystem("gajic-ss", "Gajic & Baldrich 2018", "SS: street and shop streams from the shared model",
               "triplet", {"pooling": "mac", "mine_k": 25, "streams": "domain", "init_from": "gajic-shared",
                           "lr": 0.00015}),
    # Attribute weight 0.1: the four attributes' mean cross-entropy starts near 2, the triplet loss near 0.15;
    # at 1.0 the heads' loss drowned the ranking loss (validation mAP fell from 32 to 17 in two epochs).
    SeedSystem("darn", "Huang et al. 2015", "DARN: two streams with attribute heads", "triplet",
               {"streams": "domain", "attribute_weight": 0.1}),
    SeedSystem("npair", "Ibrahim et al. 2020", "N-pair, 30 x 2 batches", "npair",
               {"sampler": "pk", "pk_products": 30, "pk_photos": 2}),
    SeedSystem("lifted", "Ibrahim et al. 2020", "lifted structured, 10 x 6 batches", "lifted",
               {"sampler": "pk", "pk_products": 10, "pk_photos": 6}),
    SeedSystem("angular", "Ibrahim et al. 2020", "angular, 30 x 2 batches", "angular",
               {"sampler": "pk", "pk_products": 30, "pk_photos": 2}),
    SeedSystem("batch-hard", "Ibrahim et al. 2020", "batch-hard triplet, 10 x 6 batches", "batch-hard",
               {"sampler": "pk", "pk_products": 10, "pk_photos": 6}),
    SeedSystem("morelli", "Morelli et al. 2021", "R-MAC, hardest-negative triplet (cosine)", "hardest",
               {"pooling": "rmac", "margin": 0.1, "batch_size": 50}),
)
SEED_RUNS: Tuple[str, ...] = tuple(s.name for s in SEED_SYSTEMS)
SEEDS_EVAL = "eval-seeds"  # the evaluation's folder under the run directory


def system_config(pcfg: DictConfig, system: SeedSystem) -> DictConfig:
    """The demo's pipeline config with the system's retrieval.train keys, checked as a config file's."""
    cfg = OmegaConf.merge(pcfg, {"retrieval": {"train": dict(system.train)}})
    check_choices(cfg, source=f"seed system {system.name}")
    return cfg


def _mean(results: Mapping[str, Dict], run: str, metric: str = "mAP") -> Optional[float]:
    value = results.get(run, {}).get("mean_over_categories", {}).get(metric)
    return None if value is None else 100.0 * value


def _compare(compare: Callable[[str, str, str], Comparison], results, a: str, b: str, claim: str, topic: str
             ) -> Optional[Finding]:
    """`b` against `a` on mean mAP with its paired interval, and whether that agrees with the paper's `claim`
    (that b is better); noise agrees with nothing."""
    ma, mb = _mean(results, a), _mean(results, b)
    if ma is None or mb is None:
        return None
    c = compare(a, b, "mAP")
    said, agrees = conclusion(c, f"{b} is better here", f"{b} is worse here", "better")
    return Finding(topic, f"{b} vs {a}: mean mAP {mb:.1f} vs {ma:.1f} ({c.text()} points); {claim} - {said}.", agrees)


def read_seeds(results: Mapping[str, Dict], per_query: Optional[Mapping[str, Dict]] = None) -> List[Finding]:
    """Each system beside its paper's claim, on mean mAP over categories (eval's metrics.json), each difference
    with its paired 95% interval from eval's per_query.json."""
    compare = Comparer(results, per_query)
    findings = [f for f in (
        _compare(compare, results, "gajic-shared", "gajic-ss", "Gajic & Baldrich: separate streams improve on the "
                 "shared network (about 1%)", "streams"),
        _compare(compare, results, "tri-crops", "darn", "Huang et al.: attribute-guided domain networks beat one "
                 "network without attributes", "attributes"),
        _compare(compare, results, "tri-crops", "morelli", "Morelli et al.: the hardest negative beats the standard "
                 "triplet", "hardest"),
    ) if f is not None]
    findings += _metric_losses(compare, results)
    ranked = sorted((r for r in results if _mean(results, r) is not None), key=lambda r: -_mean(results, r))
    if len(ranked) >= 2:
        c = compare(ranked[1], ranked[0], "mAP")
        lead = "ahead beyond noise" if c.verdict == "better" else NOISE if c.verdict == "noise" else UNTESTED
        findings.append(Finding("best", f"Best system here: {ranked[0]} (mean mAP {_mean(results, ranked[0]):.1f}); "
                                        f"against the runner-up {ranked[1]}: {c.text()} points, {lead}; worst: "
                                        f"{ranked[-1]} ({_mean(results, ranked[-1]):.1f}).", None))
    return findings


def _metric_losses(compare: Callable[[str, str, str], Comparison], results) -> List[Finding]:
    """Ibrahim et al.'s claim (N-pair best, lifted lowest), each order tested pairwise: agrees when every
    comparison it needs is beyond noise, disagrees when one is beyond noise the other way."""
    losses = ("npair", "lifted", "angular", "batch-hard")
    if any(_mean(results, r) is None for r in losses):
        return []
    npair = [compare(o, "npair", "mAP") for o in losses if o != "npair"]
    lifted = [compare(o, "lifted", "mAP") for o in losses if o != "lifted"]
    if all(c.verdict == "better" for c in npair) and all(c.verdict == "worse" for c in lifted):
        agrees: Optional[bool] = True
    elif any(c.verdict == "worse" for c in npair) or any(c.verdict == "better" for c in lifted):
        agrees = False
    else:
        agrees = None
    ranked = ", ".join(f"{r} {_mean(results, r):.1f}" for r in sorted(losses, key=lambda r: -_mean(results, r)))
    versus = "; ".join(f"{c.b} - {c.a} {c.text()}" for c in npair + lifted)
    said = {True: "as the paper", False: "unlike the paper", None: "no order beyond noise that decides it"}[agrees]
    return [Finding("metric losses", f"Ibrahim et al.'s losses by mean mAP: {ranked}. Paired: {versus} points. "
                                     f"The paper: N-pair best, lifted lowest - {said} here.", agrees)]


TITLES = {"streams": "Separate street and shop streams (Gajic & Baldrich)?",
          "attributes": "Attribute-aware domain networks (DARN)?",
          "hardest": "The hardest negative (Morelli et al.)?",
          "metric losses": "Which metric-learning loss (Ibrahim et al.)?",
          "best": "Overall"}


def seeds_markdown(findings: List[Finding]) -> str:
    return reading_markdown(findings, TITLES, "No seed systems evaluated to compare.")


def seed_steps(prefix: str, layout, search_k: int) -> List[Step]:
    """Train, embed and search every seed system (in SEED_SYSTEMS' order: SS after its shared model), then
    evaluate them together."""
    from ..embed.stage import run_embed
    from ..evaluate.stage import run_eval
    from ..retrieval.train import run_train_retrieval
    from ..search.stage import run_search

    steps = []
    for s in SEED_SYSTEMS:
        sets = "".join(f" --set {o}" for o in s.options())
        steps.append(Step(f"train {s.name} ({s.paper}: {s.method})",
                          f"{prefix}{sets} train-retrieval --loss {s.loss} --shop-crops {CROPS} --name {s.name}",
                          layout.retrieval(s.name),
                          lambda c, cmd, f, s=s: run_train_retrieval(system_config(c, s), s.loss, CROPS, name=s.name,
                                                                     command=cmd, force=f)))
    steps += [Step(f"embed {s.name}", f"{prefix} embed -m {s.name} --gallery-crops {CROPS}", layout.embed(s.name),
                   lambda c, cmd, f, s=s: run_embed(c, models=[s.name], gallery_crops=CROPS, command=cmd, force=f))
              for s in SEED_SYSTEMS]
    steps += [Step(f"search {s.name}", f"{prefix} search {s.name} --k {search_k}", layout.search(s.name),
                   lambda c, cmd, f, s=s: run_search(c, s.name, k=search_k, command=cmd, force=f))
              for s in SEED_SYSTEMS]
    steps.append(Step("evaluate the seed systems", f"{prefix} eval {' '.join(SEED_RUNS)} --per-category "
                                                   f"--out-name {SEEDS_EVAL}", layout.run_dir / SEEDS_EVAL,
                      lambda c, cmd, f: run_eval(c, list(SEED_RUNS), out_name=SEEDS_EVAL, command=cmd, force=f)))
    return steps
