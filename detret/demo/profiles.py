"""The demo's two sizes: the default run (Table 1 in under 15 minutes on two CPU cores)
and ``--quick`` (every stage exercised in a minute or two, for the tests).

A profile is the synthetic dataset's size plus pipeline-config overrides layered
on the ``detret.yaml`` that ``detret data synth`` writes; the demo saves the
merged result as ``<out>/demo.yaml`` so that any stage can be rerun by hand with
``detret --config <out>/demo.yaml ...``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

from ..data.synth.generate import SynthConfig


@dataclass(frozen=True)
class DemoProfile:
    name: str
    synth: SynthConfig
    overrides: Dict[str, Any] = field(default_factory=dict)   # nested pipeline-config keys
    search_k: int = 20


# The demo's detector predicts and records masks: the paper recipe's ap-masks trains and searches on mask crops.
MASKS = ["MODEL.MASK_ON", "True", "DETRET.DETECT.MASKS", "True"]

FULL = DemoProfile(
    name="full",
    # 240 products (160 with street photos) instead of the generator's 300: the demo's
    # time budget is 15 minutes on two CPU cores. 800 ModaNet-style photos instead of 400:
    # the detector's 5% held out is then 40 photos, enough to show every label (the
    # training iterations, not the photos, set the detector's time; val as `data synth` makes it).
    synth=SynthConfig(n_products=160, n_distractors=80, n_modanet_train=800, n_modanet_val=80),
    overrides={
        # The synthetic detector (detectron_configs/mask_rcnn_R_18_FPN_synth_cpu.yaml) with its mask head
        # (the mask crops of ap-masks; a third more training time): its 900 iterations are what the shop
        # crops need (issue 18).
        "detector": {"opts": MASKS},
        # Two epochs instead of three: an epoch of the AP loss takes ~40 s here.
        "retrieval": {"train": {"epochs": 2}},
    },
)

QUICK = DemoProfile(
    name="quick",
    synth=SynthConfig(n_products=30, n_distractors=8, n_modanet_train=24, n_modanet_val=2),
    overrides={
        "detector": {"opts": [*MASKS, "SOLVER.MAX_ITER", "12", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "2",
                              "SOLVER.CHECKPOINT_PERIOD", "12", "SOLVER.IMS_PER_BATCH", "2",
                              "INPUT.MIN_SIZE_TRAIN", "(192,)", "DATALOADER.NUM_WORKERS", "0"]},
        "retrieval": {"train": {"epochs": 1, "image_size": 64, "dim": 32, "batch_size": 8, "mine_k": 5}},
    },
    search_k=10,
)

PROFILES = {p.name: p for p in (FULL, QUICK)}
