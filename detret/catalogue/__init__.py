"""A retailer's own catalogue: products, photos, crops and descriptors, searchable by category.

A catalogue is a directory bound to one descriptor model (a run's retrieval checkpoint(s),
its detector and the paper's crop policy)::

    <catalogue>/
      catalogue.sqlite     SQLite (WAL): products, photos, crops, changes, generations, segments,
                           tombstones, trained indexes
      catalogue.lock       the writers' lock (fcntl)
      model.json           the bound model: descriptor tree, detector, crop policy, identity
      models/              copies of the model files (checkpoints by content hash, detector)
      photos/ab/<sha256>.<ext>   the photos, stored by content
      indexes/<category>/<segment>.{ids,vectors}.npy[, .faiss]   immutable vector segments
      indexes/<category>/trained-<ns>.faiss                      the category's trained empty index
      journal/<change>.npz       descriptors of an add that is not applied yet
      staging/<key>/<batch>.npz  crops and descriptors an add has computed so far (reused by a rerun)

The database is the source of truth; segments hold only vectors. Every change (add, remove)
goes through the journal of ``changes.py`` and is atomic: killed at any moment, the
catalogue is as before or, once the next writer opens it, as after. An add writes one new
segment per touched category, a removal only tombstones (rows in the database): a change
costs what it changes. ``compact.py`` merges segments, drops tombstones and builds the
approximate indexes (``indexing.py``) off the change's path.
"""
