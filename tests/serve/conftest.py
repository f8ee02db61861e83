"""The service's fixtures: the demo catalogue served in-process."""
import pytest

from detret.serve.uploads import Limits

from .helpers import serving_copy


@pytest.fixture(scope="module")
def served(demo_catalogue, tmp_path_factory):
    with serving_copy(demo_catalogue, tmp_path_factory.mktemp("served"),
                      Limits(max_upload_bytes=2 * 2**20, max_pixels=4_000_000)) as served:
        yield served
