"""The detection artifact: one JSON line per cropped photo, and its raw per-photo cache.

``<run_dir>/detect-<split>/detections.jsonl``, sorted by (category, photo_id, record),
one line per photo and category (shop photos) or per query record (street photos)::

    {"photo_id": 36520, "split": "shop", "category": "bags", "record": null,
     "width": 913, "height": 1304,                      # pixels of the upright photo
     "detections": [{"box_xyxy": [x0, y0, x1, y1],     # pixels, every detection the detector kept
                     "label": "bag", "score": 0.93, "objectness": 0.88}, ...],
     "crop": {"box_xyxy": [x0, y0, x1, y1], "rule": "detection" | "fallback" | "ground_truth" | "full",
              "detection": 0 | null,                    # index into "detections"
              "mask": {"size": [H, W], "counts": "..."}},  # only when masks are recorded (DETRET.DETECT.MASKS):
                                                       # the chosen detection's (shop), or that of the detection
                                                       # of the category best matching the box (street, masks.py)
     "status": "ok"}
    {"photo_id": 12, ..., "status": "skipped", "reason": "corrupt or truncated image (...)", "crop": null}

``record`` is the index of the query in its ``{train,test}_pairs_<cat>.json``
(a street photo with two boxes of one product gives two queries).

While the stage runs, detector outputs are appended per photo to
``photos.partial.jsonl`` (flushed and fsynced per batch), so a killed run
resumes without recomputing them; a torn last line is dropped on reading.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional

from ..errors import InputError
from ..runs.atomic import atomic_path
from ..runs.layout import DETECTIONS_FILE
from .crops import Crop, Detection

ARTIFACT_NAME = DETECTIONS_FILE
PARTIAL_NAME = "photos.partial.jsonl"


@dataclass
class PhotoDetections:
    """Raw detector output for one photo (the resumable cache's line)."""

    photo_id: int
    width: int = 0
    height: int = 0
    detections: List[Detection] = field(default_factory=list)
    status: str = "ok"
    reason: str = ""

    def to_json(self) -> Dict:
        return {"photo_id": self.photo_id, "width": self.width, "height": self.height, "status": self.status,
                "reason": self.reason, "detections": [_det_json(d) for d in self.detections]}

    @classmethod
    def from_json(cls, obj: Dict) -> "PhotoDetections":
        return cls(obj["photo_id"], obj["width"], obj["height"], [_det_from(d) for d in obj["detections"]],
                   obj["status"], obj.get("reason", ""))


def _det_json(d: Detection, with_mask: bool = True) -> Dict:
    out = {"box_xyxy": [round(float(v), 2) for v in d.box_xyxy], "label": d.label,
           "score": round(float(d.score), 5), "objectness": round(float(d.objectness), 5)}
    if with_mask and d.mask is not None:
        out["mask"] = d.mask
    return out


def _det_from(obj: Dict) -> Detection:
    return Detection(tuple(obj["box_xyxy"]), obj["label"], obj["score"], obj["objectness"], obj.get("mask"))


@dataclass
class CropRecord:
    """One line of the artifact."""

    photo_id: int
    split: str
    category: str
    record: Optional[int]
    width: int
    height: int
    detections: List[Detection]
    crop: Optional[Crop]
    status: str = "ok"
    reason: str = ""
    mask: Optional[Dict] = None   # the crop's mask (masks.py): its detection's, or the box's best match (street)

    def to_json(self) -> Dict:
        out = {"photo_id": self.photo_id, "split": self.split, "category": self.category, "record": self.record,
               "width": self.width, "height": self.height,
               "detections": [_det_json(d, with_mask=False) for d in self.detections],
               "crop": None if self.crop is None else {
                   "box_xyxy": [round(float(v), 2) for v in self.crop.box_xyxy], "rule": self.crop.rule,
                   "detection": self.crop.detection},
               "status": self.status}
        if self.mask is not None:
            out["crop"]["mask"] = self.mask
        if self.status != "ok":
            out["reason"] = self.reason
        return out

    @classmethod
    def from_json(cls, obj: Dict) -> "CropRecord":
        crop = obj.get("crop")
        return cls(obj["photo_id"], obj["split"], obj["category"], obj.get("record"), obj["width"], obj["height"],
                   [_det_from(d) for d in obj["detections"]],
                   None if crop is None else Crop(tuple(crop["box_xyxy"]), crop["rule"], crop["detection"]),
                   obj["status"], obj.get("reason", ""), None if crop is None else crop.get("mask"))

    @property
    def key(self):
        return (self.category, self.photo_id, -1 if self.record is None else self.record)


def read_partial(path: Path) -> Dict[int, PhotoDetections]:
    """Cached photos of an interrupted run; a torn last line is cut off the file."""
    done: Dict[int, PhotoDetections] = {}
    if not path.is_file():
        return done
    good_bytes = 0
    with open(path, "rb") as fh:
        for line in fh:
            try:
                obj = json.loads(line)
                rec = PhotoDetections.from_json(obj)
            except (json.JSONDecodeError, KeyError, TypeError):
                break  # a line torn by a kill: everything after it is discarded
            done[rec.photo_id] = rec
            good_bytes += len(line)
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good_bytes)
    return done


def append_partial(path: Path, records: Iterable[PhotoDetections]) -> None:
    lines = "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(lines)
        fh.flush()
        os.fsync(fh.fileno())


def write_artifact(path: Path, records: Iterable[CropRecord]) -> None:
    """The artifact, sorted by key, written atomically."""
    ordered = sorted(records, key=lambda r: r.key)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in ordered:
                fh.write(json.dumps(rec.to_json(), sort_keys=True) + "\n")


def read_artifact(path: Path) -> Iterator[CropRecord]:
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            try:
                yield CropRecord.from_json(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{n}: not a detection record ({exc})") from exc
