"""`detret train-detector`: Detectron2's trainer on the registered ModaNet splits.

Detectron2's ``DefaultTrainer`` does the work (data loading with its
augmentations, the solver and schedule, periodic checkpoints, ``--resume`` from
the last one, evaluation hooks); detret adds:

- dataset registration from the pipeline config (in every process);
- ``COCOEvaluator`` on the held-out split (box AP, AP50, per-category AP; masks
  too when the model has them), whose results go to ``evaluation.json``;
- writers that need no TensorBoard (metrics.json and the console; TensorBoard
  event files too when ``tensorboard`` is installed);
- the merged config (``config.yaml``) beside ``model_final.pth``, so that
  ``detect`` rebuilds the detector from the run directory alone.

Data-parallel over GPUs and machines through Detectron2's ``launch`` (NCCL on
GPUs, gloo on CPU).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Dict, Optional

import torch
from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter
from omegaconf import DictConfig, OmegaConf

from ..data.register import dataset_dicts, register_datasets
from ..errors import InputError
from ..runs.atomic import atomic_write_text
from ..runs.layout import RunLayout
from ..runs.stage import Stage
from ..utils.device import DataParallel, resolve_device
from ..utils.logs import library_prints_hidden, show_library_logs
from . import roi_heads  # noqa: F401  -- registers detret's ROI heads in spawned workers too
from .config import build_detector_cfg, check_weights_available, detector_identity
from .d2_compat import ddp_on_cpu, make_checkpointer_atomic

logger = logging.getLogger(__name__)

EVALUATION_FILE = "evaluation.json"  # COCO metrics on the held-out split: {"dataset": [...], "results": {...}}


class QuietCOCOEvaluator(COCOEvaluator):
    """COCOEvaluator whose pycocotools progress prints stay out of the command's output (``--debug`` shows them)."""

    def evaluate(self, img_ids=None):
        with library_prints_hidden():
            return super().evaluate(img_ids)


class DetectorTrainer(DefaultTrainer):
    def __init__(self, cfg: CfgNode) -> None:
        with ddp_on_cpu(cfg.MODEL.DEVICE):
            super().__init__(cfg)
        make_checkpointer_atomic(self)  # every save of the PeriodicCheckpointer hook atomic

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None):
        tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
        return QuietCOCOEvaluator(dataset_name, tasks=tasks, distributed=True,
                                  output_dir=output_folder or os.path.join(cfg.OUTPUT_DIR, "inference"))

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model):
        """Detectron2's SGD, or AdamW (DETRET.SOLVER.OPTIMIZER) over the same parameter groups (no weight decay
        on norms and biases as configured), gradient clipping as configured."""
        if cfg.DETRET.SOLVER.OPTIMIZER == "SGD":
            return super().build_optimizer(cfg, model)
        params = get_default_optimizer_params(model, base_lr=cfg.SOLVER.BASE_LR,
                                              weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
                                              bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
                                              weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS)
        adamw = torch.optim.AdamW(params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        return maybe_add_gradient_clipping(cfg, adamw)

    def build_writers(self):
        os.makedirs(self.cfg.OUTPUT_DIR, exist_ok=True)
        printer = CommonMetricPrinter(self.max_iter)
        printer.logger = logger  # its iteration lines (losses, ETA) are this command's own progress output
        writers = [printer, JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"))]
        try:
            import torch.utils.tensorboard  # noqa: F401  -- needs the tensorboard package
            from detectron2.utils.events import TensorboardXWriter

            writers.append(TensorboardXWriter(self.cfg.OUTPUT_DIR))
        except ImportError:
            pass  # metrics.json holds the same scalars
        return writers


def _worker(cfg_yaml: str, pipeline_yaml: str, resume: bool) -> Dict:
    from detectron2.utils.logger import setup_logger

    cfg = CfgNode.load_cfg(cfg_yaml)
    cfg.freeze()
    pcfg = OmegaConf.create(pipeline_yaml)
    # Detectron2's log goes to log.txt; on the console only with --debug (its iteration lines are ours, above)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="detectron2",
                 configure_stdout=show_library_logs())
    if comm.get_world_size() > 1:
        from ..utils.device import data_parallel_device

        data_parallel_device(cfg.MODEL.DEVICE)  # CPU processes share the cores
    # Detectron2's own seeding (as its default_setup does): initial weights, sampler
    # order and augmentation follow cfg.SEED, which run_train_detector sets from the
    # pipeline seed, so the same seed on the same CPU trains the same detector.
    from detectron2.utils.env import seed_all_rng

    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + comm.get_rank())
    register_datasets(pcfg)
    trainer = DetectorTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    # The EvalHook evaluates after the last iteration and keeps the results on the
    # trainer; evaluate here only when it did not (no test set, or a resumed, finished run).
    results = getattr(trainer, "_last_eval_results", None)
    if results is None and cfg.DATASETS.TEST:
        results = DetectorTrainer.test(cfg, trainer.model)
    return _json_safe(dict(results or {}))


def _json_safe(obj):
    """COCO metrics with NaN (no prediction, or a label absent from the held-out split) -> None."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def train_detector(
    pcfg: DictConfig,
    cfg: CfgNode,
    *,
    resume: bool,
    num_gpus: int = 0,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
) -> Dict:
    """Train (or resume), evaluate on the held-out split, write config and evaluation; returns metrics."""
    out = Path(cfg.OUTPUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", cfg.dump())
    args = (cfg.dump(), OmegaConf.to_yaml(pcfg), resume)
    parallel = DataParallel(num_gpus, num_machines, machine_rank, dist_url)
    if parallel.world > 1:
        parallel.launch(_worker, *args)
        results = _read_coco_results(out)
    else:
        results = _worker(*args)
    return results


def _read_coco_results(out: Path) -> Dict:
    """After a multi-process run the metrics are in metrics.json's last evaluation record."""
    path = out / "metrics.json"
    if not path.is_file():
        return {}
    last = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if any(k.startswith("bbox/") for k in rec):
            last = rec
    return _json_safe({"bbox": {k[5:]: v for k, v in last.items() if k.startswith("bbox/")}}) if last else {}


def _detector_cfg(pcfg: DictConfig, opts, out: Path) -> CfgNode:
    """The merged Detectron2 config; Detectron2's default seed -1 (random) becomes the pipeline's seed."""
    device = resolve_device(pcfg.device)
    cfg = build_detector_cfg(pcfg.detector.config_file, list(pcfg.detector.opts) + list(opts),
                             weights=pcfg.detector.weights, device=str(device), output_dir=str(out))
    if cfg.SEED < 0:
        cfg.defrost()
        cfg.SEED = int(pcfg.seed)
        cfg.freeze()
    return cfg


def run_train_detector(
    pcfg: DictConfig,
    *,
    opts=(),
    resume: bool = False,
    force: bool = False,
    num_gpus: int = 0,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
    command: Optional[str] = None,
) -> Dict:
    """The train-detector stage: checks, manifest, training, evaluation.json; returns the evaluation."""
    if not pcfg.data.modanet.annotations:
        raise InputError("data.modanet.annotations is not set in the pipeline config")
    layout = RunLayout(pcfg.run_dir)
    out = layout.detector
    cfg = _detector_cfg(pcfg, opts, out)
    init_weights = check_weights_available(cfg)  # fail now, not after building data loaders
    register_datasets(pcfg)
    n_train = len(dataset_dicts(cfg.DATASETS.TRAIN[0]))  # loads and validates the annotations now
    logger.info("training on %d photos of %s", n_train, cfg.DATASETS.TRAIN[0])
    inputs = {"annotations": Path(pcfg.data.modanet.annotations), "photos": Path(pcfg.data.modanet.images),
              "split": layout.modanet_split}
    if init_weights:
        inputs["init_weights"] = Path(init_weights)
    stage = Stage(out, "train-detector", config={"detector_cfg": detector_identity(cfg)}, inputs=inputs,
                  command=command, pipeline_config=pcfg)
    reused = stage.reuse_or_begin(force=force, summary_name=EVALUATION_FILE)
    if reused is not None:
        return reused
    if stage.state == "fresh":
        for old in list(out.glob("model_*.pth")) + [out / "last_checkpoint"]:
            if old.exists():
                old.unlink()
    results = train_detector(pcfg, cfg, resume=resume or stage.state == "resume", num_gpus=num_gpus,
                             num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url)
    evaluation = {"dataset": list(cfg.DATASETS.TEST), "results": results}
    if comm.is_main_process():
        stage.finish(evaluation, {"weights": "model_final.pth", "config": "config.yaml"},
                     summary_name=EVALUATION_FILE)
    return evaluation
