"""The catalogue's SQLite database: schema, connections and the queries readers and writers share.

Tables (all columns documented in README, "Your own catalogue"):

- ``meta(key, value)``: ``schema_version``, ``identity`` (the bound model's hash), ``index_factory``, ``dim``;
- ``products(product, category, title, url)``: one row per product id (text, the retailer's own);
- ``photos(photo_id, product, category, sha256, file, source, width, height, box_xyxy, rule, state,
  change_id)``: one row per (photo content, product); ``photo_id`` is the FAISS id; ``box_xyxy`` is the
  crop as JSON ``[x0, y0, x1, y1]`` in pixels of the upright photo; ``rule``: ``detection``, ``fallback``,
  ``given box`` or ``full``; ``state``: ``pending`` (an add not applied yet: invisible) or ``present``;
- ``changes(change_id, kind, state, started, finished, detail)``: the journal (``changes.py``);
- ``indexes(category, generation, ntotal)``: bumped with every change of the category's index, so a
  reader knows when to reload it.

WAL mode lets the server read while one writer changes the catalogue.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

SCHEMA_VERSION = 1

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
"""


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


def generation_and_visible(conn: sqlite3.Connection, category: str) -> Tuple[int, int]:
    """(the category's index generation, its photos a reader may show), from one snapshot. Both change
    only together, so a reader counts once per generation; an index holding more vectors than the count
    also holds ids it must not show (an add not committed yet, a removal not yet applied to it)."""
    row = conn.execute("SELECT generation, (SELECT COUNT(*) FROM photos WHERE category = ? AND state = 'present') "
                       "FROM indexes WHERE category = ?", (category, category)).fetchone()
    return (row[0], row[1]) if row else (0, 0)


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
