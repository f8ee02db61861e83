"""DeepFashion2 Recall@K both ways: against a brute-force sort, and end to end on a made-up split."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from detret.config.pipeline import load_pipeline_config
from detret.data.deepfashion2 import DF2Item, matches
from detret.embed.deepfashion2 import run_embed_df2
from detret.evaluate.deepfashion2 import recall_at_k
from detret.evaluate.deepfashion2_stage import run_eval_df2
from detret.retrieval.model import build_retrieval_net, save_checkpoint


def brute_force_first_match(query: np.ndarray, q: DF2Item, gallery: np.ndarray, gitems: list) -> int:
    """1-based rank of the first match by a full sort (the independent reference)."""
    order = np.lexsort((np.arange(len(gitems)), -(gallery @ query)))
    for rank, j in enumerate(order, start=1):
        if matches(q, gitems[j]):
            return rank
    return 0


def _item(i, domain, pair, style):
    return DF2Item(f"{i:06d}", 1, domain, pair, style, 1, "short_sleeved_shirt", (0, 0, 10, 10), 1, 1, 1, 1)


def test_recall_equals_brute_force():
    rng = np.random.default_rng(0)
    consumer = [_item(i, "consumer", pair=i % 7, style=(i % 3)) for i in range(30)]
    shop = [_item(100 + i, "shop", pair=i % 9, style=1 + (i % 2)) for i in range(40)]
    c = rng.normal(size=(30, 8)).astype(np.float32)
    s = np.round(rng.normal(size=(40, 8)), 1).astype(np.float32)  # ties happen
    result = recall_at_k(c, consumer, s, shop, ks=(1, 5, 10, 20))
    ranks = [brute_force_first_match(c[i], q, s, shop) for i, q in enumerate(consumer)]
    valid = np.array([r for r in ranks if r > 0])
    assert result["queries_without_match"] == sum(r == 0 for r in ranks) > 0
    for k in (1, 5, 10, 20):
        assert result["recall"][k] == pytest.approx(np.mean(valid <= k))


def test_perfect_descriptors_give_recall_one():
    consumer = [_item(i, "consumer", pair=i, style=1) for i in range(5)]
    shop = [_item(10 + i, "shop", pair=i, style=1) for i in range(5)] + [_item(20, "shop", pair=0, style=0)]
    eye = np.eye(6, dtype=np.float32)
    r = recall_at_k(eye[:5], consumer, eye[[0, 1, 2, 3, 4, 0]] * np.array([[1]] * 5 + [[0.5]], np.float32), shop)
    assert r["recall"] == {1: 1.0, 5: 1.0, 10: 1.0, 20: 1.0} and r["queries_without_match"] == 0


def test_embed_and_eval_end_to_end(tmp_path, capsys):
    split = tmp_path / "df2" / "validation"
    (split / "annos").mkdir(parents=True)
    (split / "image").mkdir()
    rng = np.random.default_rng(1)
    n = 0
    for pair in range(3):
        for source in ("user", "shop"):
            n += 1
            arr = rng.integers(0, 255, (60, 50, 3), dtype=np.uint8)
            Image.fromarray(arr).save(split / "image" / f"{n:06d}.jpg")
            item = {"category_id": 1, "category_name": "short_sleeved_shirt", "style": 1,
                    "bounding_box": [5, 5, 45, 55], "occlusion": 1, "scale": 1, "zoom_in": 1, "viewpoint": 2}
            (split / "annos" / f"{n:06d}.json").write_text(json.dumps({"source": source, "pair_id": pair,
                                                                        "item1": item}))
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, build_retrieval_net("resnet18", dim=8, pretrained=False, image_size=48, resize="square"))
    cfg = load_pipeline_config(None, ["device=cpu", f"run_dir={tmp_path / 'run'}",
                                      f"data.deepfashion2.root={tmp_path / 'df2'}"], cwd=tmp_path)
    summary = run_embed_df2(cfg, models=[str(ckpt)], name="m", workers=0)
    assert summary["consumer"] == 3 and summary["shop"] == 3
    results = run_eval_df2(cfg, ["m"])
    for direction in ("consumer2shop", "shop2consumer"):
        r = results["m"][direction]
        assert r["queries"] == 3 and r["queries_without_match"] == 0 and r["recall"][5] == 1.0
    table = (tmp_path / "run" / "eval-df2" / "table.md").read_text()
    assert "## consumer2shop (Ibrahim et al.'s Table 2 layout)" in table and "## shop2consumer" in table
    assert "| Run | scale small | occlusion slight | zoom_in no | viewpoint frontal | R@1 | R@5 | R@10 | R@20 |" in table
    assert "| m | " in table and "| queries | 3 | 3 | 3 | 3 | 3 | 3 | 3 | 3 |" in table
    # the command prints the same table (reusing the stage)
    from detret.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main(["--set", "device=cpu", "--set", f"run_dir={tmp_path / 'run'}", "--set",
              f"data.deepfashion2.root={tmp_path / 'df2'}", "eval-df2", "m"])
    assert exc.value.code == 0 and table in capsys.readouterr().out


def _levelled(i, domain, pair, scale, occlusion, zoom_in, viewpoint):
    return DF2Item(f"{i:06d}", 1, domain, pair, 1, 1, "short_sleeved_shirt", (0, 0, 10, 10), occlusion, scale,
                   zoom_in, viewpoint)


def test_breakdown_by_annotation_level_covers_every_level_as_a_loop_by_hand():
    """Generated consumer queries at every level of the four attributes (and one unknown level 0): Recall@K per
    level equals a loop over the queries of that level with brute-force ranks."""
    rng = np.random.default_rng(3)
    consumer = [_levelled(i, "consumer", i % 11, 1 + i % 3, 1 + (i // 3) % 3, 1 + (i // 9) % 3, (i // 27) % 4)
                for i in range(120)]
    shop = [_levelled(500 + i, "shop", i % 11, 1, 1, 1, 1) for i in range(60)]
    c = rng.normal(size=(120, 6)).astype(np.float32)
    s = rng.normal(size=(60, 6)).astype(np.float32)
    result = recall_at_k(c, consumer, s, shop, ks=(1, 5, 10, 20), breakdown_k=5, bootstrap=200)
    ranks = {i: brute_force_first_match(c[i], q, s, shop) for i, q in enumerate(consumer)}
    names = {"scale": ["small", "moderate", "large"], "occlusion": ["slight", "medium", "heavy"],
             "zoom_in": ["no", "medium", "large"], "viewpoint": ["no wear", "frontal", "side or back"]}
    for attribute, levels in names.items():
        got = result["levels"][attribute]
        expected_levels = levels + (["unknown (0)"] if attribute == "viewpoint" else [])
        assert sorted(got) == sorted(expected_levels)
        for value, level in [(v, lvl) for v, lvl in enumerate(levels, start=1)] + [(0, "unknown (0)")]:
            if level not in got:
                continue
            mine = [ranks[i] for i, q in enumerate(consumer) if getattr(q, attribute) == value and ranks[i] > 0]
            assert got[level]["queries"] == len(mine)
            assert got[level]["recall"] == pytest.approx(np.mean(np.array(mine) <= 5))
            lo, hi = got[level]["ci95"]
            assert lo <= got[level]["recall"] <= hi
    assert set(result["ci95"]) == {1, 5, 10, 20}


def test_breakdown_on_the_real_annotation_record(realdata):
    """The real DeepFashion2 record (a user photo: item1 style 1 at scale 3, occlusion 2, zoom_in 2, viewpoint 2;
    item2 style 0) against a shop item of the same pair and style: one scored query, at its own levels."""
    from detret.data.categories import load_categories
    from detret.data.deepfashion2 import parse_annotation

    items = parse_annotation(realdata / "deepfashion2/annos_000001.json", load_categories().deepfashion2)
    consumer = [i for i in items if i.domain == "consumer"]
    shop = [DF2Item("900000", 1, "shop", consumer[0].pair_id, 1, 1, "short_sleeved_shirt", (0, 0, 9, 9), 1, 1, 1, 1)]
    result = recall_at_k(np.eye(len(consumer), 3, dtype=np.float32), consumer, np.eye(1, 3, dtype=np.float32), shop)
    assert result["queries_without_match"] == 1  # item2: style 0 forms no pair
    assert result["levels"]["scale"] == {"large": {"queries": 1, "recall": 1.0, "ci95": None}}
    assert list(result["levels"]["occlusion"]) == ["medium"] and list(result["levels"]["zoom_in"]) == ["medium"]
    assert list(result["levels"]["viewpoint"]) == ["frontal"]
