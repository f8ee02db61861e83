"""What the catalogue's tests share: its rows and vectors read directly, the demo's photos, product lists."""
from pathlib import Path

from detret.catalogue.store import Catalogue
from detret.catalogue.vectors import load_vectors


def photo_rows(root):
    cat = Catalogue.open(root)
    try:
        return [dict(r) for r in cat.conn.execute("SELECT * FROM photos ORDER BY photo_id")]
    finally:
        cat.close()


def index_vectors(root, category):
    """photo id -> its stored vector, for the category's live rows (what a reader searches)."""
    cat = Catalogue.open(root)
    try:
        vectors = load_vectors(cat.layout, cat.conn)
        return {int(i): vectors.vector(category, int(i)) for i in vectors.live_ids(category)}
    finally:
        cat.close()


def demo_images(pcfg):
    return Path(pcfg.data.street2shop.root) / "images"


def write_products_csv(folder: Path, lines, header="photo,product,category,box,title,url"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "products.csv"
    path.write_text(header + "\n" + "".join(line + "\n" for line in lines))
    return path


def link_photos(pcfg, folder: Path, photo_ids):
    folder.mkdir(parents=True, exist_ok=True)
    for pid in photo_ids:
        target = folder / f"shop_{pid}.jpg"
        if not target.exists():
            target.symlink_to(demo_images(pcfg) / f"{pid:09d}.jpg")
