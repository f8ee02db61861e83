"""embed -> search -> eval on a tiny synthetic dataset, with an ensemble of two checkpoints."""
import json

import numpy as np
import pytest
import torch

from detret.cli.app import main
from detret.config.pipeline import load_pipeline_config
from detret.embed import inference as embed_inference
from detret.embed import stage as embed_stage
from detret.embed.artifact import read_descriptors
from detret.embed.combine import run_combine
from detret.evaluate.stage import run_eval
from detret.retrieval.metrics import ranking
from detret.retrieval.model import build_retrieval_net, save_checkpoint
from detret.runs.stage import stage_status
from detret.search.stage import run_search


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from detret.data.synth.generate import SynthConfig, generate

    root = tmp_path_factory.mktemp("tiny_embed")
    generate(SynthConfig(seed=11, n_products=22, n_distractors=11, n_modanet_train=2, n_modanet_val=1), root)
    ckpts = []
    for i, (size, resize) in enumerate(((64, "square"), (80, "longest"))):
        torch.manual_seed(i)
        model = build_retrieval_net("resnet18", dim=16 + 8 * i, pretrained=False, image_size=size, resize=resize)
        path = root / f"m{i}.pt"
        save_checkpoint(path, model)
        ckpts.append(path)
    return root, ckpts


def _cfg(root, run):
    return load_pipeline_config(root / "detret.yaml", ["device=cpu", f"run_dir={run}"])


def test_ensemble_is_normalised_concatenation_of_singles(setup, tmp_path):
    root, (m0, m1) = setup
    cfg = _cfg(root, tmp_path)
    kw = dict(gallery_crops="full", workers=0, batch_size=8, shard_size=16)
    s0 = embed_stage.run_embed(cfg, models=[str(m0)], name="one", **kw)
    embed_stage.run_embed(cfg, models=[str(m1)], name="two", **kw)
    both = embed_stage.run_embed(cfg, models=[str(m0), str(m1)], name="both", **kw)
    assert both["dim"] == 16 + 24 and s0["dim"] == 16
    for side in ("gallery", "queries"):
        a, rows_a = read_descriptors(tmp_path / "embed-one", side)
        b, _ = read_descriptors(tmp_path / "embed-two", side)
        e, rows_e = read_descriptors(tmp_path / "embed-both", side)
        assert rows_a == rows_e and e.dtype == np.float32 and e.flags["C_CONTIGUOUS"]
        assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
        assert np.allclose(e, np.concatenate([a, b], 1) / np.sqrt(2), atol=1e-5)
    assert stage_status(tmp_path / "embed-both").state == "done"
    # the same ensemble made from the two descriptor runs (each could have its own crops)
    run_combine(cfg, ["one", "two"], "combined")
    for side in ("gallery", "queries"):
        e, rows_e = read_descriptors(tmp_path / "embed-both", side)
        c, rows_c = read_descriptors(tmp_path / "embed-combined", side)
        assert rows_c == rows_e and np.allclose(c, e, atol=1e-6)
    # any number of members, a run twice included (two seeds of one configuration are two runs like these)
    run_combine(cfg, ["one", "two", "one"], "three")
    for side in ("gallery", "queries"):
        a, _ = read_descriptors(tmp_path / "embed-one", side)
        b, _ = read_descriptors(tmp_path / "embed-two", side)
        t, _ = read_descriptors(tmp_path / "embed-three", side)
        assert np.allclose(t, np.concatenate([a, b, a], 1) / np.sqrt(3), atol=1e-5)
    with pytest.raises(ValueError, match="at least two"):
        run_combine(cfg, ["one"], "x")


def test_search_equals_brute_force_within_category(setup, tmp_path):
    root, (m0, _) = setup
    cfg = _cfg(root, tmp_path)
    embed_stage.run_embed(cfg, models=[str(m0)], name="one", gallery_crops="full", workers=0)
    run_search(cfg, "one", k=5, use_gpu=False)
    g, grows = read_descriptors(tmp_path / "embed-one", "gallery")
    q, qrows = read_descriptors(tmp_path / "embed-one", "queries")
    top = np.load(tmp_path / "search-one" / "topk_rows.npy")
    for qi, r in enumerate(qrows):
        idx = np.array([j for j, gr in enumerate(grows) if gr.category == r.category])
        expected = idx[ranking(q[qi] @ g[idx].T)[:5]]
        assert np.array_equal(top[qi][:len(expected)], expected)
    lines = (tmp_path / "search-one" / "rankings.jsonl").read_text().splitlines()
    assert len(lines) == len(qrows) and len(json.loads(lines[0])["results"]) == 5
    assert (tmp_path / "search-one" / "indexes").is_dir()


def test_embed_resumes_shards(setup, tmp_path, monkeypatch):
    root, (m0, _) = setup
    cfg = _cfg(root, tmp_path / "a")
    ref = embed_stage.run_embed(cfg, models=[str(m0)], name="r", gallery_crops="full", workers=0, shard_size=8)
    cfg_b = _cfg(root, tmp_path / "b")
    real = embed_inference.embed_crops
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(embed_inference, "embed_crops", dying)
    with pytest.raises(KeyboardInterrupt):
        embed_stage.run_embed(cfg_b, models=[str(m0)], name="r", gallery_crops="full", workers=0, shard_size=8)
    assert stage_status(tmp_path / "b" / "embed-r").state == "running"
    monkeypatch.setattr(embed_inference, "embed_crops", real)
    embed_stage.run_embed(cfg_b, models=[str(m0)], name="r", gallery_crops="full", workers=0, shard_size=8)
    for name in ("gallery.npy", "queries.npy", "gallery_rows.jsonl"):
        assert (tmp_path / "a" / "embed-r" / name).read_bytes() == (tmp_path / "b" / "embed-r" / name).read_bytes()
    assert ref["gallery"] > 0


def test_eval_table_and_cli(setup, tmp_path, capsys):
    root, (m0, m1) = setup
    cfg = _cfg(root, tmp_path)
    for name, models in (("one", [str(m0)]), ("both", [str(m0), str(m1)])):
        embed_stage.run_embed(cfg, models=models, name=name, gallery_crops="full", workers=0)
    results = run_eval(cfg, ["one", "both"], ks=(1, 20))
    assert set(results) == {"one", "both"}
    table = (tmp_path / "eval" / "table.md").read_text()
    assert "| Category | Metric | one | both |" in table and "Acc@20" in table
    assert (tmp_path / "eval" / "acc_at_k.png").stat().st_size > 1000
    for r in results.values():
        assert 0 <= r["mean_over_categories"]["mAP"] <= 1
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(root / "detret.yaml"), "--set", f"run_dir={tmp_path}", "--set", "device=cpu",
              "eval", "one", "both", "--per-category"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    assert "mean over categories" in out and "bags" in out


def test_two_processes_give_the_descriptors_of_one(setup, tmp_path):
    """Data-parallel embedding over 2 gloo processes: each computes every other shard; same rows and descriptors."""
    root, (m0, _) = setup
    kw = dict(models=[str(m0)], name="r", gallery_crops="full", workers=0, shard_size=8)
    embed_stage.run_embed(_cfg(root, tmp_path / "one"), **kw)
    summary = embed_stage.run_embed(_cfg(root, tmp_path / "two"), num_processes=2, **kw)
    assert summary["gallery"] > 16  # several shards, so both processes had work
    for name in ("gallery_rows.jsonl", "queries_rows.jsonl", "skipped.jsonl"):
        assert (tmp_path / "one" / "embed-r" / name).read_bytes() == (tmp_path / "two" / "embed-r" / name).read_bytes()
    for side in ("gallery", "queries"):
        # each process runs on its share of the cores: equal up to float summation order
        a, _ = read_descriptors(tmp_path / "one" / "embed-r", side)
        b, _ = read_descriptors(tmp_path / "two" / "embed-r", side)
        assert a.shape == b.shape and float((a * b).sum(1).min()) > 1 - 1e-5
    assert stage_status(tmp_path / "two" / "embed-r").state == "done"


def test_a_trained_model_embeds_after_the_photos_it_was_trained_on_changed(setup, tmp_path, capsys):
    """A model is a valid model whatever happens later to its training data: embed uses it (and records
    its hash); a damaged model file is still refused."""
    import shutil

    from detret.runs.stage import Stage, StaleArtifactError

    root, (m0, _) = setup
    cfg = _cfg(root, tmp_path)
    training_data = tmp_path / "train_pairs.json"
    training_data.write_text("[1]")
    trained = tmp_path / "retrieval-m"
    stage = Stage(trained, "train-retrieval-m", config={}, inputs={"pairs": training_data}, command="detret x")
    stage.begin()
    shutil.copy(m0, trained / "model.pt")
    stage.complete({"model": "model.pt"})
    training_data.write_text("[1, 2]")  # a product added to the training pairs since
    assert stage_status(trained).state == "stale"
    summary = embed_stage.run_embed(cfg, models=["m"], gallery_crops="full", workers=0)
    assert summary["models"] == ["m"] and summary["gallery"] > 0
    models = json.loads((tmp_path / "embed-m" / "models.json").read_text())["models"]
    assert models[0]["checkpoint"] == str(trained / "model.pt")
    # status: the training stage is stale, and says its model is still used as it is
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(root / "detret.yaml"), "--set", f"run_dir={tmp_path}", "status", "--json"])
    assert exc.value.code == 1
    rows = {r["stage"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["train-retrieval-m"]["state"] == "stale" and rows["train-retrieval-m"]["model_in_use"]
    assert rows["embed-m"]["state"] == "done" and not rows["embed-m"]["model_in_use"]
    (trained / "model.pt").write_bytes(b"not the trained model")
    with pytest.raises(StaleArtifactError, match="output model"):
        embed_stage.run_embed(cfg, models=["m"], name="m2", gallery_crops="full", workers=0)
