"""What the service's tests share: the token, a demo street query, a search request, a product upload."""
import contextlib
from pathlib import Path

from fastapi.testclient import TestClient

from detret.embed.artifact import read_descriptors
from detret.serve.app import create_app
from tests.helpers import copy_catalogue

TOKEN = "s3cret-token"


def street_query(pcfg, i=0):
    """(photo bytes, category, box, the query's row index) of test query ``i`` of the demo."""
    _, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "queries")
    r = rows[i]
    photo = Path(pcfg.data.street2shop.root) / "images" / f"{r.photo_id:09d}.jpg"
    return photo.read_bytes(), r.category, r.box_xyxy, i


def search_photo(client, data, **fields):
    return client.post("/api/search", files={"photo": ("street.jpg", data, "image/jpeg")},
                       data={k: str(v) for k, v in fields.items()})


def products_upload(pcfg, product, category, photo_id):
    shop = Path(pcfg.data.street2shop.root) / "images" / f"{photo_id:09d}.jpg"
    csv = f"photo,product,category,title\nnew.jpg,{product},{category},A new one\n"
    return {"products": ("products.csv", csv.encode(), "text/csv"), "photos": ("new.jpg", shop.read_bytes(), "image/jpeg")}


@contextlib.contextmanager
def serving_copy(demo_catalogue, folder: Path, limits):
    """(client, app, catalogue, pipeline config): a private copy of the demo catalogue served in-process."""
    root, pcfg = demo_catalogue
    cat = copy_catalogue(root, folder / "cat")
    app = create_app(cat, token=TOKEN, limits=limits)
    with TestClient(app) as client:
        yield client, app, cat, pcfg

