"""The catalogue's database module holds every SQL statement of detret, and a removal matches photos by
a known column only (never by an SQL fragment)."""
import ast
import sqlite3
from pathlib import Path

import pytest

from detret.catalogue import db

PACKAGE = Path(db.__file__).resolve().parents[1]


def test_no_module_but_the_database_module_executes_sql():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == Path(db.__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany", "executescript"):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_removals_match_photos_by_a_known_column_and_a_list_of_values(tmp_path):
    conn = db.connect(tmp_path / "c.sqlite", create=True)
    db.insert_product(conn, "P/1", "bags", None, None)
    ids = [db.insert_pending_photo(conn, 1, product="P/1", category="bags", sha256=s, file=f"photos/{s}.jpg",
                                   source=None, width=8, height=8, box_xyxy=None, rule="full") for s in ("a", "b")]
    db.make_present(conn, 1)
    assert db.count_present_matching(conn, "product", ["P/1"]) == (2, 1)
    assert [r["photo_id"] for r in db.present_matching(conn, "photo_id", [ids[1]])] == [ids[1]]
    assert db.count_present_matching(conn, "sha256", ["a", "zzz"]) == (1, 1)
    with pytest.raises(ValueError, match="matched by one of product, sha256, source, file, photo_id"):
        db.present_matching(conn, "1 = 1 OR product", ["x"])
    db.delete_present_matching(conn, "file", ["photos/a.jpg"])
    assert db.product_count(conn) == 1 and db.present_photo_count(conn) == 1
    assert isinstance(conn, sqlite3.Connection)
