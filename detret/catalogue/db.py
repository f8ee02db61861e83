"""The catalogue's SQLite database: schema, connections, and every query of the catalogue and the service
(no other module writes SQL; the change protocol in ``changes.py`` decides what, and in which transaction).

Tables (all columns documented in README, "Your own catalogue"):

- ``meta(key, value)``: ``schema_version``, ``identity`` (the bound model's hash), ``index_factory``, ``dim``;
- ``products(product, category, title, url)``: one row per product id (text, the retailer's own);
- ``photos(photo_id, product, category, sha256, file, source, width, height, box_xyxy, rule, state,
  change_id)``: one row per (photo content, product); ``photo_id`` is the FAISS id; ``box_xyxy`` is the
  crop as JSON ``[x0, y0, x1, y1]`` in pixels of the upright photo; ``rule``: ``detection``, ``fallback``,
  ``given box`` or ``full``; ``state``: ``pending`` (an add not applied yet: invisible) or ``present``;
- ``changes(change_id, kind, state, started, finished, detail)``: the journal (``changes.py``);
- ``indexes(category, generation, ntotal)``: the generation is bumped with every change of the category,
  so a reader knows when to look for new segments and tombstones (``ntotal`` is not used since schema 2);
- ``segments(category, name, photos, params, training, created)``: the vector segments readers load
  (``segments.py``); ``params``: JSON search parameters of an indexed segment (``nprobe``, ``efSearch``),
  NULL for an exact one;
- ``tombstones(seq, photo_id, category)``: removed photo ids still held by a segment, until a compaction
  drops them; ``seq`` grows, so a reader reads only those written since it last looked;
- ``trainings(category, factory, file, trained_on, params, recall_at_20, recall_queries, seconds,
  trained)``: the category's trained index (``indexing.py``): its FAISS factory, the empty trained index
  file, the photos it was trained on, the tuned search parameters and the recall@20 against exact search
  measured when it was trained.

WAL mode lets the server read while one writer changes the catalogue.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

SCHEMA_VERSION = 2   # 1: one FAISS file per category (``upgrade.py`` converts it)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
  product TEXT PRIMARY KEY, category TEXT NOT NULL, title TEXT, url TEXT);
CREATE TABLE IF NOT EXISTS photos (
  photo_id INTEGER PRIMARY KEY AUTOINCREMENT,
  product TEXT NOT NULL REFERENCES products(product),
  category TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  file TEXT NOT NULL,
  source TEXT,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL,
  box_xyxy TEXT,
  rule TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'present')),
  change_id INTEGER NOT NULL,
  UNIQUE (sha256, product));
CREATE INDEX IF NOT EXISTS photos_by_category ON photos (category, state);
CREATE INDEX IF NOT EXISTS photos_by_change ON photos (change_id);
CREATE INDEX IF NOT EXISTS photos_by_source ON photos (source);
CREATE TABLE IF NOT EXISTS changes (
  change_id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL CHECK (kind IN ('add', 'remove')),
  state TEXT NOT NULL CHECK (state IN ('pending', 'applied', 'done')),
  started TEXT NOT NULL DEFAULT (datetime('now')),
  finished TEXT,
  detail TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS indexes (
  category TEXT PRIMARY KEY, generation INTEGER NOT NULL, ntotal INTEGER NOT NULL);
""" + """
CREATE INDEX IF NOT EXISTS photos_by_product ON photos (product);
CREATE INDEX IF NOT EXISTS photos_by_file ON photos (file);
CREATE TABLE IF NOT EXISTS segments (
  category TEXT NOT NULL, name TEXT NOT NULL, photos INTEGER NOT NULL, params TEXT, training TEXT,
  created TEXT NOT NULL DEFAULT (datetime('now')), PRIMARY KEY (category, name));
CREATE TABLE IF NOT EXISTS tombstones (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, photo_id INTEGER NOT NULL UNIQUE, category TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tombstones_by_category ON tombstones (category);
CREATE TABLE IF NOT EXISTS trainings (
  category TEXT PRIMARY KEY, factory TEXT NOT NULL, file TEXT NOT NULL, trained_on INTEGER NOT NULL,
  params TEXT NOT NULL, recall_at_20 REAL, recall_queries INTEGER, seconds REAL,
  trained TEXT NOT NULL DEFAULT (datetime('now')));
"""

_SCHEMA_V2_TABLES = SCHEMA[SCHEMA.index("CREATE INDEX IF NOT EXISTS photos_by_product"):]


def add_schema_v2_tables(conn: sqlite3.Connection) -> None:
    """The tables and indexes schema 2 added (idempotent; a reader of schema 1 does not look at them; the
    indexes make a removal cost what it removes: without them each removed product scanned every row)."""
    conn.executescript(_SCHEMA_V2_TABLES)


def connect(path: Path, *, create: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode with a busy timeout; autocommit (transactions are explicit)."""
    path = Path(path)
    if not create and not path.is_file():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a committed change survives a power cut, not only a kill
    conn.execute("PRAGMA foreign_keys=ON")
    if create:
        conn.executescript(SCHEMA)
    return conn


@contextlib.contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Several reads from one snapshot of the database (a deferred read transaction in WAL mode)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


class transaction:
    """``with transaction(conn):`` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, *_) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def get_meta(conn: sqlite3.Connection) -> Dict[str, str]:
    return {r["key"]: r["value"] for r in conn.execute("SELECT key, value FROM meta")}


def set_meta(conn: sqlite3.Connection, values: Dict[str, object]) -> None:
    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                     [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in values.items()])


def generations(conn: sqlite3.Connection) -> Dict[str, int]:
    return {r["category"]: r["generation"] for r in conn.execute("SELECT category, generation FROM indexes")}


def visible_photos(conn: sqlite3.Connection, photo_ids: Sequence[int]) -> Dict[int, sqlite3.Row]:
    """photo id -> its row joined with its product, for the ids that a reader may show."""
    out: Dict[int, sqlite3.Row] = {}
    for chunk in in_chunks(int(i) for i in photo_ids):
        marks = ",".join("?" * len(chunk))
        out.update({r["photo_id"]: r for r in conn.execute(
            f"SELECT p.*, pr.title, pr.url FROM photos p JOIN products pr USING (product) "
            f"WHERE p.photo_id IN ({marks}) AND p.state = 'present'", chunk)})
    return out


def box_of(row: sqlite3.Row) -> Optional[List[float]]:
    return None if row["box_xyxy"] is None else json.loads(row["box_xyxy"])


def counts_by_category(conn: sqlite3.Connection) -> Dict[str, Dict[str, int]]:
    out: Dict[str, Dict[str, int]] = {}
    for r in conn.execute("SELECT category, COUNT(*) AS photos, COUNT(DISTINCT product) AS products FROM photos "
                          "WHERE state = 'present' GROUP BY category ORDER BY category"):
        out[r["category"]] = {"photos": r["photos"], "products": r["products"]}
    return out


def present_photo_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM photos WHERE state = 'present'").fetchone()[0]


def rule_counts(conn: sqlite3.Connection) -> Dict[str, int]:
    return {r["rule"]: r["n"] for r in conn.execute(
        "SELECT rule, COUNT(*) AS n FROM photos WHERE state = 'present' GROUP BY rule")}


def in_chunks(values: Iterable, size: int = 500):
    """SQLite limits the number of ``?`` in one statement; query long id lists in chunks."""
    chunk: List = []
    for v in values:
        chunk.append(v)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- the writer's queries (the change protocol, ``changes.py``; ``add.py``, ``remove.py``, ``check.py``) ----

MATCH_COLUMNS = ("product", "sha256", "source", "file", "photo_id")  # what a removal may match photos by


def _match(column: str, values: Sequence) -> Tuple[str, Tuple[str]]:
    """(``<column> IN (...)``, its parameter): the values as one JSON list, however many."""
    if column not in MATCH_COLUMNS:
        raise ValueError(f"photos are matched by one of {', '.join(MATCH_COLUMNS)}, not {column!r}")
    listed = [v if isinstance(v, str) else int(v) for v in values]  # numpy integers are not JSON
    return f"{column} IN (SELECT value FROM json_each(?))", (json.dumps(listed),)


def count_present_matching(conn: sqlite3.Connection, column: str, values: Sequence) -> Tuple[int, int]:
    """(present photos, their distinct products) whose ``column`` is one of ``values``."""
    where, args = _match(column, values)
    row = conn.execute(f"SELECT COUNT(*), COUNT(DISTINCT product) FROM photos WHERE state = 'present' "
                       f"AND {where}", args).fetchone()
    return row[0], row[1]


def present_matching(conn: sqlite3.Connection, column: str, values: Sequence) -> List[sqlite3.Row]:
    where, args = _match(column, values)
    return conn.execute(f"SELECT photo_id, category, product, file FROM photos WHERE state = 'present' "
                        f"AND {where}", args).fetchall()


def delete_present_matching(conn: sqlite3.Connection, column: str, values: Sequence) -> None:
    where, args = _match(column, values)
    conn.execute(f"DELETE FROM photos WHERE state = 'present' AND {where}", args)


def product_categories(conn: sqlite3.Connection, products: Sequence[str]) -> Dict[str, str]:
    """product -> its category, for those of ``products`` the catalogue knows."""
    known: Dict[str, str] = {}
    for chunk in in_chunks(products):
        known.update({r[0]: r[1] for r in conn.execute(
            f"SELECT product, category FROM products WHERE product IN ({','.join('?' * len(chunk))})", chunk)})
    return known


def has_photo(conn: sqlite3.Connection, sha256: str, product: str) -> bool:
    """Whether the photo of this content is in the catalogue for this product (in any state)."""
    return conn.execute("SELECT 1 FROM photos WHERE sha256 = ? AND product = ?", (sha256, product)).fetchone() is not None


def present_with_content(conn: sqlite3.Connection, sha256s: Sequence[str]) -> Iterable[sqlite3.Row]:
    """The present photos of any of these contents, by photo id."""
    for chunk in in_chunks(sorted(set(sha256s))):
        yield from conn.execute(f"SELECT * FROM photos WHERE state = 'present' AND sha256 IN "
                                f"({','.join('?' * len(chunk))}) ORDER BY photo_id", chunk)


def insert_product(conn: sqlite3.Connection, product: str, category: str, title: Optional[str],
                   url: Optional[str]) -> None:
    """A product the catalogue does not hold yet (a known one is left as it is)."""
    conn.execute("INSERT INTO products (product, category, title, url) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (product) DO NOTHING", (product, category, title, url))


def update_product_text(conn: sqlite3.Connection, product: str, title: Optional[str], url: Optional[str]) -> None:
    """The product's title and url where given (None keeps the old one)."""
    conn.execute("UPDATE products SET title = COALESCE(?, title), url = COALESCE(?, url) WHERE product = ?",
                 (title, url, product))


def drop_products_without_photos(conn: sqlite3.Connection, products) -> None:
    """Delete those of ``products`` that no photo row (of any state) names any more."""
    for chunk in in_chunks(sorted(products)):
        conn.execute(f"DELETE FROM products WHERE product IN ({','.join('?' * len(chunk))}) AND NOT EXISTS "
                     "(SELECT 1 FROM photos WHERE photos.product = products.product)", chunk)


def insert_pending_photo(conn: sqlite3.Connection, change_id: int, *, product: str, category: str, sha256: str,
                         file: str, source: Optional[str], width: int, height: int, box_xyxy: Optional[str],
                         rule: str) -> int:
    """A photo row of a pending add (invisible to readers); its photo id (its FAISS id)."""
    return conn.execute(
        "INSERT INTO photos (product, category, sha256, file, source, width, height, box_xyxy, rule, state, "
        "change_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
        (product, category, sha256, file, source, width, height, box_xyxy, rule, change_id)).lastrowid


def photo_ids_of_change(conn: sqlite3.Connection, change_id: int) -> Dict[str, List[int]]:
    """category -> the photo ids an add brought, in order."""
    by_cat: Dict[str, List[int]] = {}
    for r in conn.execute("SELECT category, photo_id FROM photos WHERE change_id = ? ORDER BY photo_id", (change_id,)):
        by_cat.setdefault(r["category"], []).append(r["photo_id"])
    return by_cat


def pending_segments(conn: sqlite3.Connection) -> List[Tuple[str, int]]:
    """(category, change id) of each pending add's photos: segments it may have written already."""
    return [(r[0], r[1]) for r in conn.execute("SELECT DISTINCT category, change_id FROM photos "
                                               "WHERE state = 'pending'")]


def make_present(conn: sqlite3.Connection, change_id: int) -> None:
    """Readers see the photos of an add from now on."""
    conn.execute("UPDATE photos SET state = 'present' WHERE change_id = ?", (change_id,))


def pending_of_change(conn: sqlite3.Connection, change_id: int) -> List[sqlite3.Row]:
    """(product, file) of the pending photos of an add."""
    return conn.execute("SELECT DISTINCT product, file FROM photos WHERE change_id = ? AND state = 'pending'",
                        (change_id,)).fetchall()


def delete_pending(conn: sqlite3.Connection, change_id: int) -> None:
    conn.execute("DELETE FROM photos WHERE change_id = ? AND state = 'pending'", (change_id,))


def files_in_use(conn: sqlite3.Connection, files: Optional[Sequence[str]] = None, present_only: bool = False
                 ) -> set:
    """The stored photo files rows name (of ``files``, or all of them; of present rows only, or of any)."""
    state = " AND state = 'present'" if present_only else ""
    if files is None:
        return {r[0] for r in conn.execute(f"SELECT DISTINCT file FROM photos WHERE 1 = 1{state}")}
    used = set()
    for chunk in in_chunks(sorted(set(files))):
        used |= {r[0] for r in conn.execute(
            f"SELECT DISTINCT file FROM photos WHERE file IN ({','.join('?' * len(chunk))}){state}", chunk)}
    return used


def all_photo_rows(conn: sqlite3.Connection) -> List[sqlite3.Row]:
    """(photo_id, category, file, box_xyxy, state) of every row, for ``catalogue check``."""
    return conn.execute("SELECT photo_id, category, file, box_xyxy, state FROM photos").fetchall()


def lines_of_visible(conn: sqlite3.Connection) -> List[sqlite3.Row]:
    """Every photo row a reader may show or an applied change keeps, with its product's title and url."""
    return conn.execute("SELECT p.*, pr.title, pr.url FROM photos p JOIN products pr USING (product) "
                        "WHERE p.state != 'pending' ORDER BY p.photo_id").fetchall()


def product_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(DISTINCT product) FROM photos WHERE state = 'present'").fetchone()[0]


def bump_generation(conn: sqlite3.Connection, category: str) -> None:
    """The category's generation + 1: readers look for its new segments and tombstones."""
    conn.execute("INSERT INTO indexes (category, generation, ntotal) VALUES (?, 1, 0) "
                 "ON CONFLICT (category) DO UPDATE SET generation = generation + 1", (category,))


# --- segments, tombstones, trainings (``segments.py``, ``compact.py``, ``indexing.py``) --------------------

def register_segment(conn: sqlite3.Connection, category: str, name: str, photos: int,
                     params: Optional[Dict] = None, training: Optional[str] = None) -> None:
    """A segment readers load from now on (registering it again changes nothing)."""
    conn.execute("INSERT OR IGNORE INTO segments (category, name, photos, params, training) VALUES (?, ?, ?, ?, ?)",
                 (category, name, photos, None if params is None else json.dumps(params), training))


def unregister_segments(conn: sqlite3.Connection, category: str, names: Sequence[str]) -> None:
    conn.execute("DELETE FROM segments WHERE category = ? AND name IN (SELECT value FROM json_each(?))",
                 (category, json.dumps(list(names))))


def segments(conn: sqlite3.Connection) -> List[sqlite3.Row]:
    """(category, name, photos, params, training) of every registered segment, by category and name."""
    return conn.execute("SELECT category, name, photos, params, training FROM segments "
                        "ORDER BY category, name").fetchall()


def add_tombstones(conn: sqlite3.Connection, category: str, photo_ids: Sequence[int]) -> None:
    conn.executemany("INSERT OR IGNORE INTO tombstones (photo_id, category) VALUES (?, ?)",
                     [(int(i), category) for i in photo_ids])


def tombstones_since(conn: sqlite3.Connection, seq: int) -> List[sqlite3.Row]:
    """(seq, photo_id, category) of the tombstones written after ``seq``, in order."""
    return conn.execute("SELECT seq, photo_id, category FROM tombstones WHERE seq > ? ORDER BY seq",
                        (seq,)).fetchall()


def tombstones_of(conn: sqlite3.Connection, category: str) -> List[int]:
    return [r[0] for r in conn.execute("SELECT photo_id FROM tombstones WHERE category = ?", (category,))]


def drop_tombstones(conn: sqlite3.Connection, photo_ids: Sequence[int]) -> None:
    """Forget tombstones whose photo no segment holds any more (a compaction dropped it)."""
    for chunk in in_chunks(int(i) for i in photo_ids):
        conn.execute(f"DELETE FROM tombstones WHERE photo_id IN ({','.join('?' * len(chunk))})", chunk)


def training_of(conn: sqlite3.Connection, category: str) -> Optional[Dict]:
    row = conn.execute("SELECT * FROM trainings WHERE category = ?", (category,)).fetchone()
    return None if row is None else {**dict(row), "params": json.loads(row["params"])}


def trainings(conn: sqlite3.Connection) -> Dict[str, Dict]:
    return {r["category"]: {**dict(r), "params": json.loads(r["params"])}
            for r in conn.execute("SELECT * FROM trainings ORDER BY category")}


def set_training(conn: sqlite3.Connection, category: str, t: Dict) -> None:
    """The category's trained index (replacing the one before)."""
    conn.execute("INSERT OR REPLACE INTO trainings (category, factory, file, trained_on, params, recall_at_20, "
                 "recall_queries, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (category, t["factory"], t["file"], t["trained_on"], json.dumps(t["params"]), t.get("recall_at_20"),
                  t.get("recall_queries"), t.get("seconds")))


def segment_counts(conn: sqlite3.Connection) -> Dict[str, Dict[str, int]]:
    """category -> {segments, rows, indexed_rows, tombstones}."""
    out: Dict[str, Dict[str, int]] = {}
    for r in conn.execute("SELECT category, COUNT(*), SUM(photos), SUM(CASE WHEN params IS NULL THEN 0 ELSE photos "
                          "END) FROM segments GROUP BY category"):
        out[r[0]] = {"segments": r[1], "rows": r[2], "indexed_rows": r[3], "tombstones": 0}
    for r in conn.execute("SELECT category, COUNT(*) FROM tombstones GROUP BY category"):
        out.setdefault(r[0], {"segments": 0, "rows": 0, "indexed_rows": 0})["tombstones"] = r[1]
    return out


def next_photo_id(conn: sqlite3.Connection) -> int:
    """The photo id the next inserted row gets (ids are never reused)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'photos'").fetchone()
    return (row[0] if row else 0) + 1


def forget_segments(conn: sqlite3.Connection) -> None:
    """No segment, tombstone or training registered (a catalogue whose vectors move to another store)."""
    for table in ("segments", "tombstones", "trainings"):
        conn.execute(f"DELETE FROM {table}")   # (a fixed name of this list, never input)


def present_ids_by_category(conn: sqlite3.Connection) -> Dict[str, set]:
    """category -> the ids of its present photos (``catalogue check``)."""
    out: Dict[str, set] = {}
    for r in conn.execute("SELECT category, photo_id FROM photos WHERE state = 'present'"):
        out.setdefault(r[0], set()).add(r[1])
    return out


# --- the changes' journal ------------------------------------------------------------------------------

def new_change(conn: sqlite3.Connection, kind: str, state: str, detail: Optional[Dict] = None) -> int:
    if detail is None:
        return conn.execute("INSERT INTO changes (kind, state) VALUES (?, ?)", (kind, state)).lastrowid
    return conn.execute("INSERT INTO changes (kind, state, detail) VALUES (?, ?, ?)",
                        (kind, state, json.dumps(detail))).lastrowid


def set_change_detail(conn: sqlite3.Connection, change_id: int, detail: Dict) -> None:
    conn.execute("UPDATE changes SET detail = ? WHERE change_id = ?", (json.dumps(detail), change_id))


def change_of(conn: sqlite3.Connection, change_id: int) -> Tuple[str, str, Dict]:
    """(kind, state, detail) of a change."""
    kind, state, detail = conn.execute("SELECT kind, state, detail FROM changes WHERE change_id = ?",
                                       (change_id,)).fetchone()
    return kind, state, json.loads(detail)


def set_change_state(conn: sqlite3.Connection, change_id: int, state: str) -> None:
    conn.execute("UPDATE changes SET state = ? WHERE change_id = ?", (state, change_id))


def finish_change(conn: sqlite3.Connection, change_id: int, rolled_back: Optional[str] = None) -> None:
    """The change is done (with the reason it was rolled back, when it was)."""
    if rolled_back is None:
        conn.execute("UPDATE changes SET state = 'done', finished = datetime('now') WHERE change_id = ?",
                     (change_id,))
    else:
        conn.execute("UPDATE changes SET state = 'done', finished = datetime('now'), "
                     "detail = json_set(detail, '$.rolled_back', ?) WHERE change_id = ?", (rolled_back, change_id))


def unfinished_changes(conn: sqlite3.Connection) -> List[sqlite3.Row]:
    """(change_id, kind, state) of every change not done, oldest first."""
    return conn.execute("SELECT change_id, kind, state FROM changes WHERE state != 'done' "
                        "ORDER BY change_id").fetchall()


def pending_change_ids(conn: sqlite3.Connection) -> set:
    return {r[0] for r in conn.execute("SELECT change_id FROM changes WHERE state = 'pending'")}


def last_done_change(conn: sqlite3.Connection) -> Optional[Dict]:
    row = conn.execute("SELECT change_id, kind, finished FROM changes WHERE state = 'done' "
                       "ORDER BY change_id DESC LIMIT 1").fetchone()
    return dict(row) if row else None

