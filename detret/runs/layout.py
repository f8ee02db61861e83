"""Where every stage of a run writes: the run directory's layout (paths only).

One run directory holds one folder per stage, each with its ``manifest.json``::

    <run_dir>/
      data/modanet_split.json        the held-out ModaNet images (train-detector)
      detector/                      train-detector
      detect-shop/                   detect --split shop
      detect-street-<subset>/        detect --split street --subset test|train
      retrieval-<model>/             train-retrieval (model.pt)
      embed-<name>/                  embed, combine
      embed-df2-<name>/              embed-df2
      search-<name>/                 search
      eval/                          eval (Table 1)
      eval-df2/                      eval-df2
      report/                        report
    <run_dir>/../demo/timings.json   detret demo's wall time per step (the demo's run_dir is <out>/runs)

:class:`RunLayout` is the only place these names are spelled; stages, the query, the
report and the demo ask it for paths. What the runs are (the paper's Table 1, the seed
systems) is data: the recipes of :mod:`detret.config.recipes`.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Union

from ..errors import InputError
from .manifest import MANIFEST_NAME

MODEL_FILE = "model.pt"            # in retrieval-<model>/: the best epoch's self-describing checkpoint
DETECTIONS_FILE = "detections.jsonl"  # in detect-*/: the crop of every photo
METRICS_FILE = "metrics.json"      # in eval/ and eval-df2/
PER_QUERY_FILE = "per_query.json"  # in eval/: {run: {category: {"queries", "ap", "first_rank"}}}, paired comparisons
RERANKED = "+"  # a re-ranked run is <descriptor run>+<method>: search-tri-crops+aqe/, a column "tri-crops+aqe"


class RunLayout:
    """The folders of one run directory (see the module docstring)."""

    def __init__(self, run_dir: Union[str, Path]) -> None:
        self.run_dir = Path(run_dir)

    @property
    def modanet_split(self) -> Path:
        return self.run_dir / "data" / "modanet_split.json"

    @property
    def detector(self) -> Path:
        return self.run_dir / "detector"

    def detect(self, split: str, subset: str = "test") -> Path:
        """``detect-shop`` (the gallery) or ``detect-street-<subset>`` (the queries)."""
        return self.run_dir / ("detect-shop" if split == "shop" else f"detect-street-{subset}")

    @property
    def detect_shop(self) -> Path:
        return self.detect("shop")

    @property
    def shop_detections(self) -> Path:
        """The shop photos' crops (``detect-shop/detections.jsonl``), read by training and embedding."""
        return self.detect_shop / DETECTIONS_FILE

    def retrieval(self, model: str) -> Path:
        return self.run_dir / f"retrieval-{model}"

    def retrieval_checkpoint(self, ref: str, what: str = "retrieval model") -> Path:
        """`ref` as a checkpoint: a file, or the name of a trained retrieval run here (its model.pt)."""
        path = Path(ref)
        if path.is_file():
            return path
        model = self.retrieval(ref) / MODEL_FILE
        if not model.is_file():
            raise InputError(f"{what} {ref!r} is neither a checkpoint file nor a trained retrieval run ({model} "
                             f"not found; trained here: {', '.join(self.trained_models()) or 'none'})")
        return model

    def embed(self, name: str) -> Path:
        return self.run_dir / f"embed-{name}"

    def foundation(self, safe_name: str) -> Path:
        """The folder a foundation model used by this run is kept in (``retrieval/foundation/folder.py``)."""
        return self.run_dir / "foundation" / safe_name

    def embed_df2(self, name: str) -> Path:
        return self.run_dir / f"embed-df2-{name}"

    def search(self, name: str, protocol: str = "category") -> Path:
        """``search-<name>``: within each category; ``search-<name>@all``: one gallery of every shop photo."""
        return self.run_dir / (f"search-{name}" if protocol == "category" else f"search-{name}@{protocol}")

    @property
    def eval(self) -> Path:
        return self.run_dir / "eval"

    @property
    def eval_df2(self) -> Path:
        return self.run_dir / "eval-df2"

    @property
    def report(self) -> Path:
        return self.run_dir / "report"

    @property
    def demo_timings(self) -> Path:
        """``detret demo`` writes its timings beside its run directory (``<out>/demo/``, run_dir ``<out>/runs``)."""
        return self.run_dir.parent / "demo" / "timings.json"

    def holds_model(self, folder: Path) -> bool:
        """Whether a stage folder holds a trained model (the detector, a retrieval-<model> run)."""
        return Path(folder) == self.detector or (Path(folder).parent == self.run_dir
                                                 and Path(folder).name.startswith("retrieval-"))

    def trained_models(self) -> List[str]:
        """Names of the retrieval-<model> folders."""
        return self._names("retrieval-")

    def descriptor_runs(self) -> List[str]:
        """Names of the embed-<name> folders of Street2Shop (not embed-df2-*)."""
        return [n for n in self._names("embed-") if not n.startswith("df2-")]

    def searched_runs(self) -> List[str]:
        """Names of the search-<name> folders within category (not search-<name>@all)."""
        return [n for n in self._names("search-") if "@" not in n]

    def search_runs(self, protocol: str = "category") -> List[str]:
        """Names of the runs searched under ``protocol`` (search-<name>[@all]), re-ranked ones included
        (``detret.search.rerank.split_reranked`` tells them apart)."""
        suffix = "" if protocol == "category" else f"@{protocol}"
        names = [n[:len(n) - len(suffix)] for n in self._names("search-") if n.endswith(suffix)]
        return [n for n in names if "@" not in n]

    def stage_folders(self) -> List[Path]:
        """Every folder of the run holding a manifest, one or two levels down, sorted."""
        found = list(self.run_dir.glob(f"*/{MANIFEST_NAME}")) + list(self.run_dir.glob(f"*/*/{MANIFEST_NAME}"))
        return [m.parent for m in sorted(found)]

    def _names(self, prefix: str) -> List[str]:
        if not self.run_dir.is_dir():
            return []
        return sorted(p.name[len(prefix):] for p in self.run_dir.glob(f"{prefix}*") if p.is_dir())
