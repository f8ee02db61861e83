"""A retailer's own catalogue: products, photos, crops and descriptors, searchable by category.

A catalogue is a directory bound to one descriptor model (a run's retrieval checkpoint(s),
its detector and the paper's crop policy)::

    <catalogue>/
      catalogue.sqlite     SQLite (WAL): products, photos, crops, changes, index generations
      catalogue.lock       the writers' lock (fcntl)
      model.json           the bound model: descriptor tree, detector, crop policy, identity
      models/              copies of the model files (checkpoints by content hash, detector)
      photos/ab/<sha256>.<ext>   the photos, stored by content
      indexes/<category>.faiss   one FAISS IndexIDMap2 per category, ids = photo ids
      journal/<change>.npz       descriptors of an add that is not applied yet
      staging/<key>/<batch>.npz  crops and descriptors an add has computed so far (reused by a rerun)

The database is the source of truth; FAISS holds only vectors. Every change (add, remove)
goes through the journal of ``changes.py`` and is atomic: killed at any moment, the
catalogue is as before or, once the next writer opens it, as after.
"""
