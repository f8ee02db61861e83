"""A catalogue of schema 1 (one FAISS IndexIDMap2 file per category), as an earlier detret wrote it, is refused by
readers with the command that converts it, and converted by the first writer with every descriptor kept."""
import sqlite3

import numpy as np
import pytest

from detret.catalogue.check import check_catalogue
from detret.catalogue.store import Catalogue
from detret.catalogue.vectors import load_vectors
from detret.cli.app import main
from detret.errors import InputError
from detret.search.faiss_lib import faiss
from tests.helpers import copy_catalogue


def _search_all(root, queries):
    cat = Catalogue.open(root)
    try:
        reader = load_vectors(cat.layout, cat.conn)
        return {c: reader.search(c, queries, 10) for c in sorted(reader.segments)}
    finally:
        cat.close()


def _as_schema_1(root):
    """The catalogue rewritten as schema 1: each category's vectors in one IDMap2,Flat file, the new tables gone.
    An extra id (a removal an earlier detret had not applied to the file yet) is left in one file."""
    cat = Catalogue.open(root)
    reader = load_vectors(cat.layout, cat.conn)
    for category in sorted(reader.segments):
        ids = reader.live_ids(category)
        index = faiss.index_factory(cat.card.dim, "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
        vectors = np.stack([reader.vector(category, int(i)) for i in ids])
        extra = np.full((1, cat.card.dim), 1 / np.sqrt(cat.card.dim), np.float32)
        index.add_with_ids(np.vstack([vectors, extra]), np.append(ids, 10 ** 6).astype(np.int64))
        faiss.write_index(index, str(cat.layout.index_file(category)))
        for f in cat.layout.segment_dir(category).iterdir():
            f.unlink()
        cat.layout.segment_dir(category).rmdir()
    cat.close()
    with sqlite3.connect(root / "catalogue.sqlite") as conn:
        conn.executescript("DROP TABLE segments; DROP TABLE tombstones; DROP TABLE trainings; "
                           "UPDATE meta SET value = '1' WHERE key = 'schema_version';")


def test_a_schema_1_catalogue_is_refused_by_readers_and_converted_by_compact(demo_catalogue, tmp_path):
    root, _ = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    queries = np.random.default_rng(0).standard_normal((6, Catalogue.open(root).card.dim)).astype(np.float32)
    before = _search_all(cat_dir, queries)
    _as_schema_1(cat_dir)
    with pytest.raises(InputError, match="schema 1.*`detret catalogue compact .*` converts it"):
        Catalogue.open(cat_dir)
    with pytest.raises(SystemExit) as exit_info:
        main(["catalogue", "compact", str(cat_dir)])
    assert exit_info.value.code == 0
    after = _search_all(cat_dir, queries)
    assert before.keys() == after.keys()
    for category in before:
        (s_before, ids_before), (s_after, ids_after) = before[category], after[category]
        assert np.allclose(s_before, s_after, atol=1e-6)
        different = ids_before != ids_after   # only between equal scores (the extra id is never among them)
        assert np.allclose(s_before[different], s_after[different], atol=1e-6)
        assert 10 ** 6 not in ids_after
    assert not list((cat_dir / "indexes").glob("*.faiss")) and check_catalogue(cat_dir)["ok"]
