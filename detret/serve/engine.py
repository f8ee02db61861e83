"""The search behind ``POST /api/search``: photos -> garments -> crops -> descriptors -> catalogue results.

One :class:`SearchEngine` per server, used by the batcher's single worker thread, so the models
see a batch of requests at a time. For each request:

- with a category: one garment, cut by the given box, or else by the detector and the paper's
  crop policy (the best detection of a label mapped to the category, the whole photo as fallback);
- without one (*shop the look*): every detection the policy would accept (objectness above the
  catalogue's threshold, a usable box) is a garment, searched in each category its label maps to;
  at most ``max_garments`` of them, the highest category scores first;
- descriptors as ``embed`` computes street queries (side "query"); each category's segments are
  searched (``catalogue/vectors.py``: removed photos' rows are dead, never returned), or its partition of
  the Milvus collection (``catalogue/milvus.py``), and results are kept only if the database shows them
  (``present``), so a query never returns a photo that is not in the catalogue.

When a category's generation in the database changes, the server loads only the segments registered
and the tombstones written since it last looked, so products added or removed while it runs are found
(or gone) without a restart, at the cost of the change; after ``catalogue reindex`` the new catalogue
and its models are loaded at the next search.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..catalogue import db
from ..catalogue.binding import BoundModels
from ..catalogue.layout import CatalogueLayout
from ..catalogue.store import Catalogue
from ..config.choices import EngineChoice
from ..data.boxes import BoxXYXY
from ..detect.crops import Crop, accepted_detections, given_box_crop

TIE_MARGIN = 8
MAX_DEPTH = 16   # a search asks for at most 16 x (k + TIE_MARGIN) hits when invisible ones crowd the top


MAX_GARMENTS = 10   # shop the look: garments of one photo searched at most


@dataclass
class Job:
    """One search request, decoded and checked. ``photo`` may be a reduced copy of the upload (the service
    reduces large photos): ``scale_xy`` = (its width / the upload's, its height / the upload's); ``box_xyxy``
    is in the reduced photo's pixels, and the answer's boxes are given back in the upload's."""

    photo: np.ndarray                  # [H, W, 3] uint8 RGB
    category: Optional[str]
    box_xyxy: Optional[BoxXYXY]        # only with a category
    k: int
    timings_ms: Dict[str, float] = field(default_factory=dict)
    scale_xy: Tuple[float, float] = (1.0, 1.0)


@dataclass
class Garment:
    category: str
    crop: Crop
    label: Optional[str] = None        # the detector label, for shop the look
    results: List[Dict] = field(default_factory=list)

    def to_json(self, scale_xy: Tuple[float, float] = (1.0, 1.0)) -> Dict:
        """The garment as the API answers it, its box in the pixels of the photo the client sent."""
        sx, sy = scale_xy
        box = [v / s for v, s in zip(self.crop.box_xyxy, (sx, sy, sx, sy))]
        return {"category": self.category, "box_xyxy": [round(float(v), 1) for v in box],
                "rule": self.crop.rule, "label": self.label, "results": self.results}


class SearchEngine:
    def __init__(self, root: Path, device="cpu", max_garments: int = MAX_GARMENTS,
                 engine: Optional[EngineChoice] = None) -> None:
        self.root, self.device, self.max_garments, self.engine = Path(root), device, max_garments, engine
        # Catalogue.open records which database file it opened (``db_inode``, read before connecting): a reindex
        # landing while the models load below is followed at the first search
        self.catalogue = Catalogue.open(root)
        self.models = BoundModels(self.catalogue.card, self.root, device, engine)
        self.vectors = self.catalogue.reader()

    def _follow_reindex(self) -> None:
        """After ``catalogue reindex`` (a new catalogue moved into place), open it, and its models if
        they changed: searches go on without a restart."""
        if db_inode(self.root) == self.catalogue.db_inode:
            return
        self.catalogue.close_vectors()   # (a Milvus Lite folder at the same path is the new catalogue's now)
        try:
            fresh = Catalogue.open(self.root)
        except BaseException:
            self.vectors = self.catalogue.reader()   # the old catalogue goes on serving
            raise
        if fresh.card.identity != self.models.card.identity:
            self.models = BoundModels(fresh.card, self.root, self.device, self.engine)
        self.catalogue.close()
        self.catalogue, self.vectors = fresh, fresh.reader()

    def warm_up(self) -> None:
        """One search of a blank photo, so that the first client does not pay for lazy initialisation
        (the detector's first forward pass is several times slower than the next ones)."""
        self.run([Job(np.full((64, 64, 3), 255, np.uint8), self.categories[0], None, 1)])

    @property
    def categories(self) -> List[str]:
        return list(self.catalogue.card.category_map)

    @property
    def has_detector(self) -> bool:
        """Whether the catalogue has a detector (without one, a search names its category: no shop the look)."""
        return self.catalogue.card.detector is not None

    def refresh(self) -> bool:
        """Load the segments and tombstones written since the last look (on Milvus: the index state; ``run``
        has followed a reindex first); whether anything changed."""
        return self.vectors.refresh(self.catalogue.conn)

    def _garments(self, job: Job, detections) -> List[Garment]:
        size_wh = (job.photo.shape[1], job.photo.shape[0])
        if job.category is not None:
            if job.box_xyxy is not None:
                return [Garment(job.category, given_box_crop(job.box_xyxy, size_wh))]  # checked non-empty
            return [Garment(job.category, self.models.crop(detections, job.category, size_wh))]
        thresh = self.models.card.crop["objectness_thresh"]
        accepted = sorted(accepted_detections(detections, size_wh, thresh), key=lambda a: (-a[1].score, a[0]))
        return [Garment(c, Crop(box, "detection", i), det.label)
                for i, det, box in sorted(accepted[:self.max_garments], key=lambda a: a[0])
                for c in self.models.categories_of(det.label)]

    def _search(self, garments: List[Garment], descriptors: np.ndarray, ks: List[int]) -> None:
        by_category: Dict[str, List[int]] = {}
        for i, g in enumerate(garments):
            by_category.setdefault(g.category, []).append(i)
        for category, idx in by_category.items():
            scores, ids, rows = self._visible_hits(category, descriptors[idx], max(ks[i] for i in idx))
            for row_i, g_i in enumerate(idx):
                hits = [(float(s), int(j)) for s, j in zip(scores[row_i], ids[row_i]) if j in rows]
                garments[g_i].results = [result_json(rank, s, rows[j]) for rank, (s, j)
                                         in enumerate(hits[:ks[g_i]], start=1)]

    def _visible_hits(self, category: str, queries: np.ndarray, k: int):
        """(scores, photo ids, the visible rows among them): searched again deeper while a full answer has fewer
        than ``k`` photos the database shows (rows of a change in flight on Milvus; at most 16x deeper)."""
        want = k + TIE_MARGIN
        while True:
            scores, ids = self.vectors.search(category, queries, want)
            rows = db.visible_photos(self.catalogue.conn, sorted({int(j) for j in ids.ravel() if j >= 0}))
            short = [(ids[q] >= 0).all() and sum(int(j) in rows for j in ids[q]) < k for q in range(len(ids))]
            if not any(short) or want >= MAX_DEPTH * (k + TIE_MARGIN):
                return scores, ids, rows
            want *= 4

    def run(self, jobs: List[Job]) -> List[Dict]:
        """The response of each job (garments and timings), the models run once for the whole batch."""
        self._follow_reindex()
        t0 = time.perf_counter()
        need = [i for i, j in enumerate(jobs) if j.box_xyxy is None]
        found = dict(zip(need, self.models.detect([jobs[i].photo for i in need]))) if need else {}
        t1 = time.perf_counter()
        garments = [self._garments(j, found.get(i, [])) for i, j in enumerate(jobs)]
        flat = [(i, g) for i, gs in enumerate(garments) for g in gs]
        masks = [found[i][g.crop.detection].mask if g.crop.detection is not None else None for i, g in flat]
        descriptors = self.models.describe([jobs[i].photo for i, _ in flat], [g.crop.box_xyxy for _, g in flat],
                                           "query", masks)
        t2 = time.perf_counter()
        self.refresh()
        self._search([g for _, g in flat], descriptors, [jobs[i].k for i, _ in flat])
        t3 = time.perf_counter()
        stages = {"detect": round((t1 - t0) * 1e3, 2), "embed": round((t2 - t1) * 1e3, 2),
                  "search": round((t3 - t2) * 1e3, 2)}
        return [{"garments": [g.to_json(j.scale_xy) for g in gs], "timings_ms": {**j.timings_ms, **stages,
                                                                       "batch_size": len(jobs)}}
                for j, gs in zip(jobs, garments)]


def db_inode(root: Path) -> int:
    """Which database file the catalogue folder holds now (a reindex replaces it)."""
    return CatalogueLayout(root).db.stat().st_ino


def result_json(rank: int, score: float, row) -> Dict:
    return {"rank": rank, "product": row["product"], "photo_id": row["photo_id"], "score": round(score, 6),
            "photo_url": f"/api/photos/{row['photo_id']}", "box_xyxy": db.box_of(row), "title": row["title"],
            "url": row["url"], "category": row["category"]}
