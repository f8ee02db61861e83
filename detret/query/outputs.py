"""What ``detret query --out DIR`` writes: ``query.json`` (the result) and ``query.png`` (the photo with
its crop, then the results with their shop crops, drawn as the report's Figure 5)."""
from __future__ import annotations

import json
from pathlib import Path

from ..data.images import read_rgb
from ..report.figures import RetrievalExample, plot_retrieval_examples
from ..runs.atomic import atomic_write_text
from .run import QueryResult


def write_query_outputs(out: Path, result: QueryResult) -> None:
    shown = [(read_rgb(path), box, None, score) for _, _, _, score, path, box in result.results]
    example = RetrievalExample(read_rgb(result.photo), result.crop.box_xyxy, f"{result.category} · {result.crop.rule}",
                               shown)
    plot_retrieval_examples(Path(out) / "query.png", [example])
    atomic_write_text(Path(out) / "query.json", json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
