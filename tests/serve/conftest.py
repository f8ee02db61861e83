"""The service's fixtures: the demo catalogue served in-process."""
import pytest
from fastapi.testclient import TestClient

from detret.serve.app import create_app
from detret.serve.uploads import Limits
from tests.helpers import copy_catalogue

from .helpers import TOKEN


@pytest.fixture(scope="module")
def served(demo_catalogue, tmp_path_factory):
    root, pcfg = demo_catalogue
    cat = copy_catalogue(root, tmp_path_factory.mktemp("served") / "cat")
    app = create_app(cat, token=TOKEN, limits=Limits(max_upload_bytes=2 * 2**20, max_pixels=4_000_000))
    with TestClient(app) as client:
        yield client, app, cat, pcfg
