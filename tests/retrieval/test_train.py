"""train-retrieval on a tiny synthetic dataset: artifacts, resume, the losses, samplers, streams and heads."""
import json

import pytest

from detret.config.pipeline import load_pipeline_config
from detret.retrieval import train as train_mod
from detret.retrieval.model import load_checkpoint
from detret.runs.stage import stage_status
from tests.helpers import FAST_RETRIEVAL as FAST


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from detret.data.synth.generate import SynthConfig, generate

    root = tmp_path_factory.mktemp("tiny_retrieval")
    generate(SynthConfig(seed=7, n_products=22, n_distractors=0, n_modanet_train=2, n_modanet_val=1), root)
    return root


def _cfg(root, run, *extra):
    return load_pipeline_config(root / "detret.yaml", [*FAST, f"run_dir={run}", *extra])


@pytest.mark.parametrize("loss, negatives", [("triplet", "offline"), ("triplet", "batch"), ("ap", "offline")])
def test_training_writes_a_loadable_model(tiny, tmp_path, loss, negatives):
    cfg = _cfg(tiny, tmp_path / "run", "retrieval.train.epochs=1", f"retrieval.train.negatives={negatives}")
    summary = train_mod.run_train_retrieval(cfg, loss, "full")
    out = tmp_path / "run" / f"retrieval-{summary['name']}"
    assert summary["name"] == ("tri-full" if loss == "triplet" else "ap-full")
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [-1, 0]
    assert metrics[1]["loss"] is not None and metrics[1]["val_map"] is not None
    model, ckpt = load_checkpoint(out / "model.pt")
    assert model.meta["training"]["loss"] == loss and model.meta["dim"] == 32
    assert stage_status(out).state == "done"


def test_interrupted_training_resumes_after_last_epoch(tiny, tmp_path, monkeypatch):
    cfg = _cfg(tiny, tmp_path / "run", "retrieval.train.epochs=2")
    real_step = train_mod._step
    calls = {"n": 0, "epoch1": False}

    def dying_step(*args, **kwargs):
        calls["n"] += 1
        if calls["epoch1"]:
            raise KeyboardInterrupt("killed in epoch 1")
        return real_step(*args, **kwargs)

    real_validate = train_mod.validate

    def validate(*args, **kwargs):
        result = real_validate(*args, **kwargs)
        if calls["n"]:  # validation after epoch 0 ran: die during epoch 1
            calls["epoch1"] = True
        return result

    monkeypatch.setattr(train_mod, "_step", dying_step)
    monkeypatch.setattr(train_mod, "validate", validate)
    with pytest.raises(KeyboardInterrupt):
        train_mod.run_train_retrieval(cfg, "triplet", "full")
    out = tmp_path / "run" / "retrieval-tri-full"
    assert stage_status(out).state == "running"
    assert [m["epoch"] for m in json.loads((out / "metrics.json").read_text())] == [-1, 0]
    monkeypatch.setattr(train_mod, "_step", real_step)
    monkeypatch.setattr(train_mod, "validate", real_validate)
    train_mod.run_train_retrieval(cfg, "triplet", "full", resume=True)
    assert [m["epoch"] for m in json.loads((out / "metrics.json").read_text())] == [-1, 0, 1]
    assert stage_status(out).state == "done"


def test_resume_without_interrupted_run_is_an_error(tiny, tmp_path):
    with pytest.raises(ValueError, match="no interrupted run"):
        train_mod.run_train_retrieval(_cfg(tiny, tmp_path / "run"), "triplet", "full", resume=True)


def test_detected_crops_need_the_detect_stage(tiny, tmp_path):
    from detret.runs.stage import StaleArtifactError

    with pytest.raises(StaleArtifactError, match="detect --split shop"):
        train_mod.run_train_retrieval(_cfg(tiny, tmp_path / "run"), "ap", "detected")


def test_classifier_pretraining_runs_before_the_ranking_loss(tiny, tmp_path):
    cfg = _cfg(tiny, tmp_path / "run", "retrieval.train.epochs=1", "retrieval.train.classifier_epochs=1")
    summary = train_mod.run_train_retrieval(cfg, "triplet", "full", name="cls")
    metrics = json.loads((tmp_path / "run" / "retrieval-cls" / "metrics.json").read_text())
    assert [m.get("phase") for m in metrics] == [None, "classifier", None]
    record = metrics[1]["classifier"][0]
    assert record["loss"] > 0 and 0 <= record["train_accuracy"] <= 1
    assert summary["best_val_map"] == metrics[2]["val_map"]


def test_data_parallel_over_two_processes_matches_one(tiny, tmp_path):
    """Two gloo processes, each with half of every batch, follow the single-process run
    (per-item seeding makes the samples independent of the split; DDP averages the halves)."""
    import torch

    opts = ["retrieval.train.epochs=1", "retrieval.train.batch_size=6", "retrieval.train.chunk_size=3"]
    one = train_mod.run_train_retrieval(_cfg(tiny, tmp_path / "one", *opts), "triplet", "full")
    two = train_mod.run_train_retrieval(_cfg(tiny, tmp_path / "two", *opts), "triplet", "full", num_gpus=2)
    assert one["processes"] == 1 and two["processes"] == 2
    a, _ = load_checkpoint(tmp_path / "one" / "retrieval-tri-full" / "model.pt")
    b, _ = load_checkpoint(tmp_path / "two" / "retrieval-tri-full" / "model.pt")
    torch.manual_seed(0)  # the initial weights, rebuilt as training built them
    from detret.retrieval.model import build_retrieval_net

    w0 = build_retrieval_net("resnet18", 32, pretrained=False).state_dict()
    params = [n for n, _ in a.named_parameters()]
    update = sum(float((a.state_dict()[n] - w0[n]).norm() ** 2) for n in params) ** 0.5
    apart = sum(float((a.state_dict()[n] - b.state_dict()[n]).norm() ** 2) for n in params) ** 0.5
    # Adam turns float-rounding differences of tiny gradients into sign flips of some
    # steps: the runs are not bit-identical, but they move the same way.
    assert update > 0 and apart < 0.1 * update, (apart, update)
    assert stage_status(tmp_path / "two" / "retrieval-tri-full").state == "done"


@pytest.mark.parametrize("pooling", ["mac", "rmac"])
def test_training_with_another_pooling_records_it(tiny, tmp_path, pooling):
    cfg = _cfg(tiny, tmp_path / "run", "retrieval.train.epochs=1", f"retrieval.train.pooling={pooling}")
    summary = train_mod.run_train_retrieval(cfg, "triplet", "full")
    out = tmp_path / "run" / f"retrieval-{summary['name']}"
    model, _ = load_checkpoint(out / "model.pt")
    assert model.meta["pooling"] == pooling and model.meta["training"]["train"]["pooling"] == pooling
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics[-1]["gem_p"] is None and metrics[-1]["loss"] is not None


def test_a_runs_training_config_records_every_key_defaults_included():
    """One fingerprint version: nothing is left out of a run's config for the sake of older runs."""
    from omegaconf import OmegaConf

    tcfg = OmegaConf.create({"architecture": "resnet50", "pooling": "gem", "sampler": "pairs"})
    assert train_mod.training_config("triplet", "full", tcfg) == {
        "loss": "triplet", "shop_crops": "full", "train": {"architecture": "resnet50", "pooling": "gem",
                                                           "sampler": "pairs"}}


def test_hardest_negative_loss_of_morelli_trains_without_mining(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "mine_negatives", lambda *a, **k: pytest.fail("hardest mines nothing"))
    cfg = _cfg(tiny, tmp_path / "run", "retrieval.train.epochs=1")
    summary = train_mod.run_train_retrieval(cfg, "hardest", "full")
    assert summary["name"] == "hardest-full"
    model, _ = load_checkpoint(tmp_path / "run" / "retrieval-hardest-full" / "model.pt")
    assert model.meta["training"]["loss"] == "hardest"
    metrics = json.loads((tmp_path / "run" / "retrieval-hardest-full" / "metrics.json").read_text())
    assert metrics[-1]["loss"] is not None


def test_a_metric_learning_loss_trains_on_p_x_k_batches(tiny, tmp_path, monkeypatch):
    """Ibrahim et al.'s setting in miniature: N-pair on P x K batches of both domains, no mining."""
    from detret.retrieval import batch as batch_mod

    monkeypatch.setattr(train_mod, "mine_negatives", lambda *a, **k: pytest.fail("P x K batches mine nothing"))
    drawn = []
    real = batch_mod.pk_batches
    monkeypatch.setattr(batch_mod, "pk_batches", lambda *a, **k: drawn.extend(real(*a, **k)) or drawn)
    cfg = _cfg(tiny, tmp_path / "run", "retrieval.train.epochs=1", "retrieval.train.sampler=pk",
               "retrieval.train.pk_products=4", "retrieval.train.pk_photos=2")
    summary = train_mod.run_train_retrieval(cfg, "npair", "full")
    assert summary["name"] == "npair-full" and summary["config"]["sampler"] == "pk"
    assert drawn and all(len(set(d.products)) <= 4 and len(d.rows) <= 8 for d in drawn)
    assert {row[0][0] for d in drawn for row in d.rows} == {"street", "shop"}
    metrics = json.loads((tmp_path / "run" / "retrieval-npair-full" / "metrics.json").read_text())
    assert metrics[-1]["loss"] is not None and metrics[-1]["loss"] > 0


def test_p_x_k_batches_are_for_the_label_based_losses(tiny, tmp_path):
    from detret.errors import InputError

    cfg = _cfg(tiny, tmp_path / "run", "retrieval.train.sampler=pk")
    with pytest.raises(InputError, match="sampler=pk is for the losses npair, lifted, angular, batch-hard"):
        train_mod.run_train_retrieval(cfg, "triplet", "full")
    cfg = _cfg(tiny, tmp_path / "run", "retrieval.train.sampler=pk", "retrieval.train.pk_photos=1")
    with pytest.raises(InputError, match="at least 2"):
        train_mod.run_train_retrieval(cfg, "lifted", "full")


def test_gajic_ss_two_streams_start_from_the_shared_run(tiny, tmp_path):
    """Gajic & Baldrich's SS: a shared run, then street and shop streams initialised from it and trained apart."""
    import torch

    shared = train_mod.run_train_retrieval(_cfg(tiny, tmp_path / "run", "retrieval.train.epochs=1",
                                                 "retrieval.train.pooling=mac"), "triplet", "full")
    cfg = _cfg(tiny, tmp_path / "run", "retrieval.train.epochs=1", "retrieval.train.pooling=mac",
               "retrieval.train.streams=domain", f"retrieval.train.init_from={shared['name']}")
    summary = train_mod.run_train_retrieval(cfg, "triplet", "full", name="ss-full")
    assert summary["config"]["streams"] == "domain" and summary["config"]["init_from"] == "tri-full"
    two, _ = load_checkpoint(tmp_path / "run" / "retrieval-ss-full" / "model.pt")
    one, _ = load_checkpoint(tmp_path / "run" / "retrieval-tri-full" / "model.pt")
    assert two.meta["streams"] == "domain" and two.street is not None
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        street, shop = two(x, "street"), two(x, "shop")
    assert not torch.allclose(street, shop)  # trained apart
    assert not torch.allclose(shop, one(x))
    # the streams moved from the shared weights, not from a fresh start: closer to it than to random
    fresh = __import__("detret.retrieval.model", fromlist=["x"]).build_retrieval_net(
        "resnet18", 32, pretrained=False, pooling="mac")
    w = "whiten.weight"
    assert (two.state_dict()[w] - one.state_dict()[w]).norm() < (two.state_dict()[w] - fresh.state_dict()[w]).norm()
    with pytest.raises(ValueError, match="pre-train with streams: shared"):
        train_mod.run_train_retrieval(_cfg(tiny, tmp_path / "run", "retrieval.train.streams=domain",
                                           "retrieval.train.classifier_epochs=1"), "triplet", "full", name="x")
    with pytest.raises(ValueError, match="retrieval.train.init_from .nope. is neither a checkpoint file nor a trained"):
        train_mod.run_train_retrieval(_cfg(tiny, tmp_path / "run", "retrieval.train.init_from=nope"), "triplet",
                                      "full", name="y")


def test_darn_trains_two_streams_with_attribute_heads(tiny, tmp_path):
    metrics_cfg = _cfg(tiny, tmp_path / "run", "retrieval.train.epochs=2", "retrieval.train.streams=domain",
                       "retrieval.train.attribute_weight=1.0", "retrieval.train.negatives=batch")
    summary = train_mod.run_train_retrieval(metrics_cfg, "triplet", "full", name="darn-full")
    model, _ = load_checkpoint(tmp_path / "run" / "retrieval-darn-full" / "model.pt")
    assert set(model.attributes) == {"colour", "pattern", "trim", "badge"}
    assert set(model.heads) == set(model.street.heads) == set(model.attributes)
    assert summary["config"]["attribute_weight"] == 1.0
    metrics = json.loads((tmp_path / "run" / "retrieval-darn-full" / "metrics.json").read_text())
    assert all(m["loss"] is not None for m in metrics[1:])


def test_attribute_heads_need_the_attribute_file(tiny, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    (data / "street2shop" / "meta" / "attributes.csv").unlink()
    cfg = _cfg(data, tmp_path / "run", "retrieval.train.attribute_weight=0.5")
    with pytest.raises(ValueError, match="attributes.csv: attribute file not found"):
        train_mod.run_train_retrieval(cfg, "triplet", "full")
