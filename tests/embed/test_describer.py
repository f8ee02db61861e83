"""The Describer computes, for new photos, what `embed` and `combine` wrote for a run's rows:
each ensemble member reads the photo as its own gallery was cut (whole photos for a DB F member), and a
whitened run applies its whitening after its source run."""
import json
from pathlib import Path

import numpy as np
import pytest

from detret.data.images import read_rgb
from detret.embed.artifact import read_descriptors
from detret.embed.describer import Describer, DescriptorSpec, spec_of_embed_run


@pytest.mark.parametrize("run", ["tri-crops", "tri-full", "Tris", "Crops", "Crops-lw"])
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


def test_a_two_stream_network_embeds_street_queries_and_shop_gallery_by_their_streams(tmp_path):
    """Gajic & Baldrich's SS at inference: queries by the street stream, the gallery by the shop stream -
    for embed (embed_crops' domain) and for every user of the Describer (query, serve, catalogue)."""
    import torch
    import torch.nn.functional as F

    from detret.embed.inference import embed_crops
    from detret.retrieval.model import build_retrieval_net, save_checkpoint
    from detret.retrieval.preprocess import resize_normalise, to_tensor

    torch.manual_seed(0)
    model = build_retrieval_net("resnet18", dim=16, pretrained=False, streams="domain", image_size=64).eval()
    with torch.no_grad():
        model.street.whiten.weight.mul_(-1.0)
    save_checkpoint(tmp_path / "ss.pt", model)
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 255, (80, 60, 3), dtype=np.uint8) for _ in range(2)]
    boxes = [(5.0, 5.0, 50.0, 70.0), None]
    describer = Describer(DescriptorSpec(models=[{"name": "ss", "checkpoint": str(tmp_path / "ss.pt")}]), "cpu")
    crops = [p[5:70, 5:50] for p in photos[:1]] + [photos[1]]
    meta = model.meta
    with torch.no_grad():
        for side, domain in (("query", "street"), ("gallery", "shop")):
            by_hand = torch.cat([model.stream(domain)(resize_normalise(to_tensor(c), 64, meta["resize"], meta["mean"],
                                                                       meta["std"])[None]) for c in crops])
            assert np.allclose(describer.describe(photos, boxes, side), F.normalize(by_hand, dim=1).numpy(),
                               atol=1e-5), side
            assert torch.allclose(embed_crops(model, crops, (1.0,), "cpu", domain=domain), by_hand, atol=1e-5)
    assert not np.allclose(describer.describe(photos, boxes, "query"), describer.describe(photos, boxes, "gallery"))
