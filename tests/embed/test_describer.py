"""The Describer computes, for new photos, what `embed` and `embed --combine` wrote for a run's rows:
each ensemble member reads the photo as its own gallery was cut (whole photos for a DB F member)."""
import json
from pathlib import Path

import numpy as np
import pytest

from detret.data.images import read_rgb
from detret.embed.artifact import read_descriptors
from detret.embed.describer import Describer, DescriptorSpec, spec_of_embed_run


@pytest.mark.parametrize("run", ["tri-crops", "tri-full", "Tris", "Crops"])
def test_describer_gives_the_runs_gallery_and_query_descriptors(demo_quick, run):
    out, result = demo_quick
    run_dir = Path(result["run_dir"])
    images = out / "street2shop" / "images"
    shop = {json.loads(line)["photo_id"]: json.loads(line)["crop"]["box_xyxy"]
            for line in (run_dir / "detect-shop" / "detections.jsonl").read_text().splitlines()}
    spec = spec_of_embed_run(run_dir, run)
    assert DescriptorSpec.from_json(json.loads(json.dumps(spec.to_json()))).identity() == spec.identity()
    describer = Describer(spec, "cpu")
    gallery, rows = read_descriptors(run_dir / f"embed-{run}", "gallery")
    picks = [0, len(rows) // 2, len(rows) - 1]
    photos = [read_rgb(images / f"{rows[i].photo_id:09d}.jpg") for i in picks]
    got = describer.describe(photos, [tuple(shop[rows[i].photo_id]) for i in picks], "gallery")
    assert np.allclose(got, gallery[picks], atol=1e-5)
    queries, qrows = read_descriptors(run_dir / f"embed-{run}", "queries")
    qpicks = [0, len(qrows) - 1]
    photos = [read_rgb(images / f"{qrows[i].photo_id:09d}.jpg") for i in qpicks]
    got = describer.describe(photos, [qrows[i].box_xyxy for i in qpicks], "query")
    assert np.allclose(got, queries[qpicks], atol=1e-5)
