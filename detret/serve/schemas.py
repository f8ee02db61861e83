"""What each route answers, as Pydantic models: FastAPI checks every answer against its model and
``/openapi.json`` (and ``/docs``) shows them. Boxes are ``[x0, y0, x1, y1]`` in the pixels of the photo
the client sent (``box_xyxy``); scores are cosine similarities; times are milliseconds."""
from __future__ import annotations

from typing import Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an answer holds what its model says, nothing more


class Error(Answer):
    """Every refusal: ``"<field>: <problem>"``."""
    error: str


class Result(Answer):
    rank: int = Field(description="1 = the nearest photo")
    product: str
    photo_id: int
    score: float = Field(description="cosine similarity of the two descriptors")
    photo_url: str
    box_xyxy: Optional[List[float]] = Field(description="where the photo shows the product, if the list said")
    title: Optional[str]
    url: Optional[str]
    category: str


class Garment(Answer):
    category: str
    box_xyxy: List[float] = Field(description="the crop searched, in the sent photo's pixels")
    rule: str = Field(description="how the crop was chosen: detected, given box, whole photo (the paper's rule)")
    label: Optional[str] = Field(description="the detector's label, when shopping the look")
    results: List[Result]


class SearchAnswer(Answer):
    garments: List[Garment]
    timings_ms: Dict[str, float] = Field(description="decode, queue, detect, embed, search, total")


class CategoryCount(Answer):
    photos: int
    products: int


class ModelCard(Answer):
    identity: str
    run: str
    dim: int
    crop_policy: str
    objectness_thresh: float


class CategoryIndex(Answer):
    index: str = Field(description="'exact', the FAISS factory of its trained index, or 'milvus <index type>'")
    segments: int = Field(description="segment files of the category (0 on Milvus, which keeps its own)")
    rows: int = Field(description="vectors its segments hold, removed ones included")
    indexed_rows: int = Field(description="rows in segments searched through the trained index")
    tombstones: int = Field(description="removed photos still in a segment, until a compaction")
    trained_on: Optional[int] = Field(description="photos the index was trained on")
    recall_at_20: Optional[float] = Field(description="recall@20 against exact search, measured at training")
    params: Dict[str, int] = Field(description="the tuned search parameters (nprobe, efSearch)")


class IndexState(Answer):
    factory: str = Field(description="the catalogue's index setting (Flat, SQfp16, auto or a FAISS factory)")
    generations: Dict[str, int] = Field(description="per category, bumped by every change")
    vectors: str = Field(description="where the vectors live: 'faiss' (segment files) or 'milvus:<uri>'")
    categories: Dict[str, CategoryIndex]


class Change(Answer):
    change_id: int
    kind: str
    finished: Optional[str]


class CatalogueSummary(Answer):
    catalogue: str = Field(description="the catalogue folder's name")
    products: int
    photos: int
    categories: Dict[str, CategoryCount]
    crop_rules: Dict[str, int]
    model: ModelCard
    index: IndexState
    last_change: Optional[Change]
    unfinished_changes: int
    size_on_disk_bytes: Optional[int] = Field(description="left out (null) by the service")


class Worker(Answer):
    ok: bool
    worker_alive: bool
    batch_running_s: Optional[float]
    batches_done: int
    waiting: int


class Health(Answer):
    status: str = Field(description="ok | unhealthy")
    photos: int
    model: str
    worker: Worker


class Unreadable(Answer):
    line: int
    photo: str
    reason: str


class Merge(Answer):
    category: str
    merged_segments: int
    rows: int
    dropped_tombstones: int
    indexed: bool
    trained: Optional[Dict] = Field(description="the new training (factory, trained_on, params, recall_at_20, "
                                                "seconds), when the merge trained the category's index")
    seconds: float


class DuplicateOf(Answer):
    photo_id: Optional[int] = Field(None, description="the stored photo it copies")
    line: Optional[int] = Field(None, description="or the earlier line of this upload it copies")
    photo: Optional[str] = None
    product: str


class Duplicate(Answer):
    line: int
    photo: str
    product: str
    kind: str = Field(description="exact (the same bytes under another product) | near (re-encoded, resized or "
                                  "slightly cropped)")
    of: DuplicateOf
    difference: float = Field(description="mean absolute difference after alignment, 0..255 (0 for exact)")
    action: str = Field(description="kept | skipped")


class Added(Answer):
    added: int
    already_present: int
    unreadable: List[Unreadable]
    crop_rules: Dict[str, int]
    change_id: Optional[int]
    reused_descriptors: int
    maintenance: List[Merge] = Field(description="segments merged after the change (it was visible before)")
    duplicates: List[Duplicate] = Field(default_factory=list, description="photos that copy another (kept)")


class Removed(Answer):
    removed_photos: int
    products_touched: int
    change_id: Optional[int]
    maintenance: List[Merge] = Field(default_factory=list)
    note: Optional[str] = None


def refusals(*statuses: int) -> Dict[int, Dict]:
    """The ``responses`` of a route: each refusal status answers an :class:`Error`."""
    return {status: {"model": Error} for status in statuses}


def binary(media_type: str, description: str) -> Dict[int, Dict]:
    """The ``responses`` of a route whose answer is a file, not JSON."""
    schema = {"type": "string", "format": "binary"} if "text" not in media_type else {"type": "string"}
    return {200: {"content": {media_type: {"schema": schema}}, "description": description}}
