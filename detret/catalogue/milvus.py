"""The catalogue's vectors on Milvus (``catalogue create --vectors milvus:PATH_OR_URI``), through
``pymilvus.MilvusClient`` only.

``milvus:vectors.db`` (a path ending in ``.db``, relative to the catalogue folder or absolute) is Milvus Lite,
embedded in the process that opens it; ``milvus:http://host:19530`` is a Milvus server or cluster (or Milvus
Lite's own server, ``milvus-lite server --data-dir DIR --host 127.0.0.1``). The same code runs on both.

One collection per catalogue (its name in the database's ``meta``: ``milvus_collection``)::

    photo_id  INT64 primary key          the catalogue's photo id
    category  VARCHAR partition key      each search is filtered to one category: Milvus routes it
    vector    FLOAT_VECTOR(dim), metric IP
    change    INT64                      the add (or repair) that wrote the row

What a result shows (product, title, box, photo) is read from the catalogue's database, as with FAISS files.

**How the catalogue's guarantees hold.** The SQLite database stays the source of truth of what is in the
catalogue; Milvus holds vectors. An add upserts its rows (by photo id: a replay writes them again, harmlessly)
*before* the commit that makes its photos ``present``; a removal commits first (its photos vanish from every
reader at once) and deletes the rows by id after (again harmless twice); a rolled-back add deletes its rows.
Readers keep only hits the database shows (``serve/engine.py``, ``visible_photos``), so a row of an add not
committed yet, or of a removal not finished yet, is never returned. Searches and reads use consistency level
**Strong**: an add's photos are ``present`` only after Milvus acknowledged their upsert, and a server reading
with a weaker level (Bounded, Eventually) could miss photos whose commit it has already seen; Strong makes a
product added while serving findable at once (on a cluster it waits for the latest write timestamp, a few
milliseconds; Milvus Lite is always strong).

**Index by size** (``--index``): ``Flat`` -> ``FLAT`` (exact); ``auto`` -> ``FLAT`` while the collection holds
fewer than ``AUTO_MIN_PHOTOS`` photos, then ``HNSW`` (M 16, efConstruction 200), the switch made by the writer
after a change (:meth:`MilvusStore.maintain`), with recall@20 against exact search measured on
``RECALL_QUERIES`` of the catalogue's own photos and ``ef`` doubled until it reaches ``RECALL_TARGET``;
``HNSW``, ``IVF_FLAT``, ``IVF_SQ8`` (Milvus Lite and servers), ``IVF_PQ``, ``DISKANN`` (servers only) fixed.
Milvus builds and compacts its per-segment indexes itself. The state is the ``milvus_index`` meta entry.

Milvus Lite embedded is one process per data folder: while a server holds ``vectors.db``, a ``catalogue add``
in another process is refused with what to do (add through the server's admin API, or run Milvus Lite as a
server). The clients of one folder in one process share it (:func:`connect`), released when the last closes.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, MissingFileError, VectorStoreError
from ..search.exact import top_k

logger = logging.getLogger(__name__)

TOKEN_ENV = "DETRET_MILVUS_TOKEN"
EXTRA_HINT = "install the extra: pip install 'detret[milvus]' (pymilvus and milvus-lite)"
CONSISTENCY = "Strong"
AUTO_MIN_PHOTOS = 20_000
RECALL_QUERIES = 200
RECALL_K = 20
RECALL_TARGET = 0.95
EF_MAX = 2048
PAGE_ROWS = 4096               # rows per upsert, delete, get and query page
INDEXES = {                    # --index -> (Milvus index type, build params, search params)
    "Flat": ("FLAT", {}, {}),
    "HNSW": ("HNSW", {"M": 16, "efConstruction": 200}, {"ef": 64}),
    "IVF_FLAT": ("IVF_FLAT", {"nlist": 1024}, {"nprobe": 16}),
    "IVF_SQ8": ("IVF_SQ8", {"nlist": 1024}, {"nprobe": 16}),
    "IVF_PQ": ("IVF_PQ", {"nlist": 1024, "m": 32, "nbits": 8}, {"nprobe": 16}),
    "DISKANN": ("DISKANN", {}, {"search_list": 100}),
}
CALL_S = 30.0                  # a search unanswered this long fails (the service answers 503; its own limit)
QUICK_CALLS = {"search", "has_collection", "get_load_state"}
SLOW_CALL_S = 600.0            # writes, reads of many rows, loading, sealing, indexing a large collection (an
                               # upsert of 4,096 rows into 1 M took over 10 s in Milvus Lite, flushing meanwhile)
LOCAL_CALLS = {"prepare_index_params", "create_schema", "close"}
AUTO = "auto"
AUTO_LARGE = "HNSW"
PROBE_KEYS = ("ef", "nprobe", "search_list")


@dataclass(frozen=True)
class VectorsSpec:
    """Where a catalogue's vectors live: ``faiss`` (segment files in the catalogue folder) or ``milvus:<uri>``."""

    kind: str
    uri: Optional[str] = None

    @classmethod
    def parse(cls, text: str) -> "VectorsSpec":
        text = (text or "faiss").strip()
        if text == "faiss":
            return cls("faiss")
        if not text.startswith("milvus:") or not text[len("milvus:"):]:
            raise InputError(f"--vectors {text!r}: expected faiss, milvus:PATH.db (Milvus Lite, embedded) or "
                             "milvus:http://HOST:19530 (a Milvus server)")
        uri = text[len("milvus:"):]
        if not (uri.startswith(("http://", "https://", "tcp://", "unix:")) or uri.endswith(".db")):
            raise InputError(f"--vectors {text!r}: a local Milvus Lite path must end in .db (pymilvus opens only "
                             "those as Milvus Lite); a server is http://HOST:PORT")
        if "://" in uri and "@" in uri.split("://", 1)[1].split("/", 1)[0]:
            raise InputError(f"--vectors: {uri.split('://', 1)[0]}://...@{uri.split('@', 1)[1]} carries a user "
                             f"and password: the URI is stored in the catalogue; give them in ${TOKEN_ENV} "
                             "(user:password or an API key) instead")
        return cls("milvus", uri)

    def __str__(self) -> str:
        return self.kind if self.uri is None else f"{self.kind}:{self.uri}"

    @property
    def is_milvus(self) -> bool:
        return self.kind == "milvus"

    def resolved_uri(self, root: Path) -> str:
        """The client's URI: a relative Milvus Lite path is taken from the catalogue folder."""
        assert self.uri is not None
        if self.uri.endswith(".db") and "://" not in self.uri:
            return str((Path(root) / self.uri).resolve())
        return self.uri


def check_index(setting: str) -> str:
    if setting not in INDEXES and setting != AUTO:
        raise InputError(f"--index {setting!r} with --vectors milvus: expected one of "
                         f"{', '.join([*INDEXES, AUTO])} (Milvus builds its own indexes; FAISS factory strings "
                         "are for --vectors faiss)")
    return setting


def pymilvus():
    try:
        import pymilvus as module
    except ImportError:
        raise MissingFileError(f"--vectors milvus needs pymilvus: {EXTRA_HINT}") from None
    return module


_SHARED: Dict[str, List] = {}     # local Lite path -> [client, users]: one client per folder per process
_SHARED_LOCK = threading.Lock()


def connect(uri: str):
    """A MilvusClient for ``uri`` (shared by the users of one Milvus Lite folder in this process)."""
    module = pymilvus()
    local = uri.endswith(".db") and "://" not in uri
    if local:
        if importlib.util.find_spec("milvus_lite") is None:   # pymilvus opens .db paths through it
            raise MissingFileError(f"{uri}: a Milvus Lite path needs milvus-lite: {EXTRA_HINT}")
    with _SHARED_LOCK:
        if local and uri in _SHARED:
            _SHARED[uri][1] += 1
            return _SHARED[uri][0]
        try:   # a server's token from the environment, never stored in the catalogue
            client = module.MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""))
        except module.exceptions.MilvusException as exc:   # a folder held elsewhere: the user acts; a server
            error = InputError if local else VectorStoreError  # that does not answer: retry later (503)
            raise error(_open_failure(uri, local, exc)) from None
        if local:
            _SHARED[uri] = [client, 1]
    return client


def _open_failure(uri: str, local: bool, exc: Exception) -> str:
    if local:
        return (f"{uri}: Milvus Lite could not open this folder ({exc}); Milvus Lite lets one process hold a "
                "folder: when a server holds it, add and remove through its admin API (POST/DELETE "
                "/api/catalogue), or run Milvus Lite as a server (`milvus-lite server --data-dir PATH --host "
                "127.0.0.1`) and use milvus:http://127.0.0.1:19530")
    return f"{uri}: cannot reach Milvus ({exc})"


def disconnect(uri: str, client) -> None:
    local = uri.endswith(".db") and "://" not in uri
    with _SHARED_LOCK:
        if local:
            entry = _SHARED.get(uri)
            if entry is None or entry[0] is not client:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _SHARED[uri]
    client.close()
    if local:   # the folder is free for another process once nobody here uses it
        from milvus_lite.server_manager import server_manager_instance
        server_manager_instance.release_server(uri)


def _search_params(state: Dict, k: int) -> Dict:
    params = dict(state.get("search", {}))
    if "ef" in params:
        params["ef"] = max(int(params["ef"]), k)   # HNSW needs ef >= k
    return {"metric_type": "IP", "params": params}


class _Guarded:
    """A MilvusClient whose failures are :class:`~detret.errors.VectorStoreError` naming the store and the call
    (a server down, a collection dropped by hand), not a driver's traceback."""

    def __init__(self, client, where: str) -> None:
        self._client, self._where = client, where

    def __getattr__(self, name: str):
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            if name not in LOCAL_CALLS:   # a call unanswered this long fails (else pymilvus waits for ever)
                kwargs.setdefault("timeout", CALL_S if name in QUICK_CALLS else SLOW_CALL_S)
            try:
                return method(*args, **kwargs)
            except pymilvus().exceptions.MilvusException as exc:
                raise VectorStoreError(f"{self._where}: Milvus {name} failed ({exc}); nothing committed is "
                                       "lost: retry once Milvus answers") from None
        return call


class MilvusStore:
    """One catalogue's collection: written by its writer, searched by its readers."""

    def __init__(self, uri: str, collection: str, dim: int, setting: str) -> None:
        self.uri, self.collection, self.dim, self.setting = uri, collection, int(dim), check_index(setting)
        self._raw = connect(uri)
        self.client = _Guarded(self._raw, f"{uri} (collection {collection})")
        self.state: Dict = {}
        if self.client.has_collection(collection):
            self._load()

    def _load(self) -> None:
        """The collection loaded for search (a Milvus server keeps it loaded; Milvus Lite loads it again in
        each process that opens it)."""
        state = self.client.get_load_state(self.collection).get("state")
        if "Loaded" not in str(state):
            self.client.load_collection(self.collection)

    def close(self) -> None:
        if self._raw is not None:
            disconnect(self.uri, self._raw)
            self._raw = self.client = None

    def _index_params(self, index: str):
        kind, build, _ = INDEXES[index]
        params = self.client.prepare_index_params()
        params.add_index(field_name="vector", index_type=kind, metric_type="IP", params=build)
        return params

    def create(self) -> Dict:
        """The collection with the index for no photos yet; the index state to store in ``milvus_index``."""
        module = pymilvus()
        schema = module.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("photo_id", module.DataType.INT64, is_primary=True)
        schema.add_field("category", module.DataType.VARCHAR, max_length=256, is_partition_key=True)
        schema.add_field("vector", module.DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("change", module.DataType.INT64)
        index = "Flat" if self.setting == AUTO else self.setting
        self.client.create_collection(self.collection, schema=schema, index_params=self._index_params(index),
                                      consistency_level=CONSISTENCY)
        self._load()
        self.state = {"index": index, "search": dict(INDEXES[index][2]), "recall_at_20": None, "measured_on": None}
        return self.state

    def drop(self) -> None:
        if self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)

    def upsert(self, category: str, photo_ids: np.ndarray, vectors: np.ndarray, change_id: int) -> None:
        """The rows of ``photo_ids`` in ``category``; a replay writes the same rows again, harmlessly."""
        _category_filter(category)   # a name that cannot enter a filter never enters the collection
        vectors = np.ascontiguousarray(vectors, np.float32)
        for start in range(0, len(photo_ids), PAGE_ROWS):
            self.client.upsert(self.collection, [
                {"photo_id": int(i), "category": category, "vector": v.tolist(), "change": int(change_id)}
                for i, v in zip(photo_ids[start:start + PAGE_ROWS], vectors[start:start + PAGE_ROWS])])

    def delete(self, photo_ids: Sequence[int]) -> None:
        ids = [int(i) for i in photo_ids]
        for start in range(0, len(ids), PAGE_ROWS):
            self.client.delete(self.collection, ids=ids[start:start + PAGE_ROWS])

    def search(self, category: str, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k] float32, photo ids [Q, k] int64; -1 past the end) within ``category``."""
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        if len(queries) == 0 or k <= 0:
            return scores, ids
        hits = self.client.search(self.collection, data=np.asarray(queries, np.float32).tolist(), limit=k,
                                  filter=_category_filter(category), anns_field="vector",
                                  search_params=_search_params(self.state, k), consistency_level=CONSISTENCY)
        for q, found in enumerate(hits):
            for r, h in enumerate(list(found)[:k]):
                scores[q, r], ids[q, r] = h["distance"], h["photo_id"]
        return scores, ids

    def vectors_of(self, photo_ids: Sequence[int]) -> Dict[int, np.ndarray]:
        """photo id -> its stored vector (float32), for the ids Milvus holds."""
        out: Dict[int, np.ndarray] = {}
        ids = [int(i) for i in photo_ids]
        for start in range(0, len(ids), PAGE_ROWS):
            for row in self.client.get(self.collection, ids=ids[start:start + PAGE_ROWS],
                                       output_fields=["vector"]):
                out[int(row["photo_id"])] = np.asarray(row["vector"], np.float32)
        return out

    def _scan(self, expression: str, fields: List[str]):
        """Every row matching ``expression``, a page at a time (Milvus's query iterator: a plain query with a
        limit returns any matching rows, not the next ones by primary key)."""
        iterator = self.client.query_iterator(self.collection, batch_size=PAGE_ROWS, filter=expression,
                                              output_fields=fields, consistency_level=CONSISTENCY)
        try:
            while True:
                page = iterator.next()
                if not page:
                    return
                yield from page
        finally:
            iterator.close()

    def rows_of(self, category: str, with_vectors: bool = False) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Every photo id of ``category`` (ascending; and their vectors, float32)."""
        fields = ["photo_id", "vector"] if with_vectors else ["photo_id"]
        rows = sorted(self._scan(_category_filter(category), fields), key=lambda r: r["photo_id"])
        ids = np.asarray([int(r["photo_id"]) for r in rows], np.int64)
        if not with_vectors:
            return ids, None
        return ids, (np.asarray([r["vector"] for r in rows], np.float32) if rows
                     else np.zeros((0, self.dim), np.float32))

    def categories(self) -> List[str]:
        """The categories the collection holds rows of."""
        return sorted({r["category"] for r in self._scan("photo_id >= 0", ["category"])})

    def count(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"],
                                 consistency_level=CONSISTENCY)
        return int(rows[0]["count(*)"]) if rows else 0

    def maintain(self, state: Dict, categories: Sequence[str]) -> Optional[Dict]:
        """``auto``: past ``AUTO_MIN_PHOTOS`` photos, the index switched from FLAT to HNSW and its ``ef``
        tuned; the new state to store, or None when nothing changed."""
        self.state = state
        # rows not flushed yet are searched by brute force in Milvus Lite (0.6 s a query at 20,000 photos against
        # 0.02 s flushed): sealed after every change, off its path (a cluster compacts the small segments)
        self.client.flush(self.collection)
        if self.setting != AUTO or state.get("index") != "Flat":
            return None
        photos = self.count()
        if photos < AUTO_MIN_PHOTOS:
            return None
        self.client.release_collection(self.collection)
        self.client.drop_index(self.collection, "vector")
        self.client.create_index(self.collection, self._index_params(AUTO_LARGE))
        self.client.load_collection(self.collection)
        self.state = {"index": AUTO_LARGE, "search": dict(INDEXES[AUTO_LARGE][2])}
        return self.tune(categories)

    def tune(self, categories: Sequence[str]) -> Dict:
        """recall@20 against exact search on up to ``RECALL_QUERIES`` stored photos of the largest of
        ``categories``; an HNSW ``ef`` / IVF ``nprobe`` doubled until it reaches ``RECALL_TARGET``."""
        best = max(categories, key=lambda c: len(self.rows_of(c)[0]), default=None)
        ids, vectors = self.rows_of(best, with_vectors=True) if best else (np.zeros(0, np.int64), None)
        state = dict(self.state, measured_on=int(len(ids)), recall_at_20=None)
        if len(ids) == 0:
            return state
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(len(ids), size=min(RECALL_QUERIES, len(ids)), replace=False))
        k = min(RECALL_K, len(ids))
        _, exact_rows = top_k(vectors, vectors[sample], k)
        exact = ids[exact_rows]
        while True:
            self.state = state
            _, found = self.search(best, vectors[sample], k)
            state["recall_at_20"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, exact)]))
            probe = next((p for p in PROBE_KEYS if p in state["search"]), None)
            if state["recall_at_20"] >= RECALL_TARGET or probe is None or state["search"][probe] >= EF_MAX:
                return state
            state["search"] = dict(state["search"], **{probe: state["search"][probe] * 2})


def _category_filter(category: str) -> str:
    """The filter of one category; its name is checked (letters, digits, _ . -) before it enters the
    expression, so a name cannot change the filter."""
    from .layout import check_category

    return f'category == "{check_category(category)}"'


def vectors_meta(vectors: VectorsSpec, folder: Path, dim: int, index_factory: str) -> Dict[str, str]:
    """The database's ``meta`` entries of a catalogue's vector store, its Milvus collection created."""
    meta = {"vectors": str(vectors), "index_factory": index_factory, "milvus_collection": "", "milvus_index": ""}
    if vectors.is_milvus:
        meta["milvus_collection"] = f"detret_{uuid.uuid4().hex}"
        store = MilvusStore(vectors.resolved_uri(folder), meta["milvus_collection"], dim, index_factory)
        try:
            meta["milvus_index"] = json.dumps(store.create())
        finally:
            store.close()
    return meta


def read_state(meta: Dict[str, str]) -> Dict:
    return json.loads(meta.get("milvus_index") or "{}")


class MilvusVectors:
    """A reader's view of the collection, with :class:`~detret.catalogue.vectors.CatalogueVectors`'
    interface: Milvus holds the rows, so a refresh only re-reads the index state when a generation changed
    (the writer's index switch bumps them)."""

    def __init__(self, store: MilvusStore) -> None:
        self.store = store
        self.generations: Dict[str, int] = {}

    def refresh(self, conn) -> bool:
        from . import db

        generations = db.generations(conn)
        if generations == self.generations:
            return False
        self.store.state = read_state(db.get_meta(conn))
        self.generations = generations
        return True

    def search(self, category: str, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.store.search(category, queries, k)

    def vector(self, category: str, photo_id: int) -> Optional[np.ndarray]:
        return self.store.vectors_of([photo_id]).get(int(photo_id))

    def live_ids(self, category: str) -> np.ndarray:
        return self.store.rows_of(category)[0]

    def categories(self) -> List[str]:
        return self.store.categories()


def maintain_collection(ap, categories: Sequence[str], retune: bool = False) -> List[Dict]:
    """After a change (``compact.maintain``) or for ``catalogue compact`` (``retune``: Milvus compacts its
    segments, and the recall is measured and the search tuned again): the index state stored, readers told."""
    from . import db

    store: MilvusStore = ap.milvus
    state = read_state(db.get_meta(ap.conn))
    if retune:
        store.client.compact(store.collection)
        store.state = state
        new = store.tune(categories)
    else:
        new = store.maintain(state, categories)
    if new is None:
        return []
    with db.transaction(ap.conn) as conn:
        db.set_meta(conn, {"milvus_index": json.dumps(new)})
        for category in sorted(categories):
            db.bump_generation(conn, category)
    return [{"vectors": "milvus", "categories": sorted(categories), **new}]
