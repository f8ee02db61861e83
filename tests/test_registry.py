"""The registries: names and errors, and building blocks registered by a module outside detret, then
trained and embedded with through the pipeline config alone (its ``imports``, ``retrieval.train.pooling``)."""
import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from detret.errors import InputError
from detret.registry import Registry, import_blocks
from detret.retrieval.objective import LOSSES
from detret.retrieval.pooling import POOLINGS

from tests.helpers import FAST_RETRIEVAL as FAST

OUTSIDE = '''
"""Blocks of a user's project: a log-sum-exp pooling and a contrastive loss of labelled photos."""
import math

import torch
from torch import nn

from detret.retrieval.objective import LOSSES, LossEntry, Rows, photo_loss
from detret.retrieval.pooling import POOLINGS, PoolingEntry

SEEN = {"pooled": 0, "losses": 0, "street": 0, "shop": 0}


class LogSumExp(nn.Module):
    """[N, C, H, W] -> [N, C]: a smooth maximum, (1/r) log mean exp(r x)."""
    def forward(self, x):
        SEEN["pooled"] += 1
        flat = x.flatten(2)
        return (torch.logsumexp(4.0 * flat, dim=2) - math.log(flat.shape[2])) / 4.0


def contrastive(d, labels, margin=0.5):
    dist = torch.cdist(d, d)
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(len(d), dtype=torch.bool)
    return dist[same & off].pow(2).mean() + torch.clamp(margin - dist[~same], min=0).pow(2).mean()


def counted(d, batch):
    SEEN["losses"] += 1
    SEEN["street"] += int(batch.street.sum())
    SEEN["shop"] += int((~batch.street).sum())
    return photo_loss(contrastive)(d, batch)


POOLINGS.register(PoolingEntry("lse", lambda gem_p: LogSumExp(), "log-sum-exp"))
LOSSES.register(LossEntry("contrastive", lambda tcfg: counted, lambda tcfg: Rows.PHOTOS, "contrastive"))
'''


def test_a_registry_refuses_unknown_and_twice_registered_names():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Entry:
        name: str
        summary: str = ""

    reg = Registry("widget")
    reg.register(Entry("b"))
    reg.register(Entry("a"))
    assert reg.names() == ["b", "a"] and "a" in reg and len(reg) == 2  # registration order
    with pytest.raises(InputError, match="retrieval.train.widget 'c' is not one of b, a"):
        reg.get("c", "retrieval.train.widget")
    with pytest.raises(ValueError, match="'a' is registered already"):
        reg.register(Entry("a"))
    with pytest.raises(ValueError, match="non-empty name"):
        reg.register(Entry(" a"))


def test_an_import_that_fails_names_the_config_and_the_module():
    with pytest.raises(InputError, match="my.yaml: imports: cannot import 'no_such_detret_blocks'"):
        import_blocks(["no_such_detret_blocks"], "my.yaml")


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """The user's module on sys.path; the registries as they were afterwards."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "outside_blocks.py").write_text(textwrap.dedent(OUTSIDE))
    monkeypatch.syspath_prepend(str(folder))
    before = {reg: dict(reg._entries) for reg in (POOLINGS, LOSSES)}
    yield
    sys.modules.pop("outside_blocks", None)
    for reg, entries in before.items():
        reg._entries = entries


def test_the_contract_gives_a_photo_loss_the_batchs_photos_and_labels(outside):
    """The loss assembled for a P x K batch is the user's function on the photos' rows, checked by hand."""
    from detret.retrieval.batch import assemble, pk_batches, pk_products

    from .retrieval.toy_batches import TCFG, toy_set

    import_blocks(["outside_blocks"], "test")
    blocks = sys.modules["outside_blocks"]
    tset = toy_set()
    draw = pk_batches(pk_products(tset), 3, 4, "contrastive", seed=0, epoch=0)[0]
    keys, loss_fn = assemble(draw, set(draw.keys()), tset, TCFG, "cpu")
    d = torch.nn.functional.normalize(torch.randn(len(keys), 8, generator=torch.Generator().manual_seed(1)), dim=1)
    x = d[[keys.index(r[0]) for r in draw.rows]].numpy()
    y = np.array([p for _, p in draw.products])
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    same, off = y[:, None] == y[None], ~np.eye(len(y), dtype=bool)
    by_hand = (dist[same & off] ** 2).mean() + (np.maximum(0.5 - dist[~same], 0) ** 2).mean()
    assert loss_fn(d).item() == pytest.approx(by_hand, rel=1e-5)
    assert blocks.SEEN["street"] + blocks.SEEN["shop"] == len(keys) and blocks.SEEN["street"] > 0


def _user_config(tmp_path):
    """A small synthetic dataset and a user's config naming the outside module, its pooling, P x K batches."""
    from detret.data.synth.generate import SynthConfig, generate

    data = tmp_path / "data"
    generate(SynthConfig(seed=7, n_products=22, n_distractors=0, n_modanet_train=2, n_modanet_val=1), data)
    config = tmp_path / "user.yaml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "imports": ["outside_blocks"], "data": {"street2shop": {"root": str(data / "street2shop")}},
        "retrieval": {"train": {"pooling": "lse", "sampler": "pk", "pk_products": 4, "pk_photos": 2, "epochs": 1}}}))
    return config


def test_a_pooling_and_a_loss_from_outside_the_package_train_and_embed_through_the_config(outside, tmp_path):
    from detret.cli.app import app
    from detret.embed.artifact import read_descriptors

    config = _user_config(tmp_path)
    sets = [a for kv in [*FAST, f"run_dir={tmp_path / 'run'}"] for a in ("--set", kv)]
    runner = CliRunner()
    trained = runner.invoke(app, ["--config", str(config), *sets, "train-retrieval", "--loss", "contrastive",
                                  "--shop-crops", "full", "--name", "mine"])
    assert trained.exit_code == 0, trained.output
    blocks = sys.modules["outside_blocks"]
    assert blocks.SEEN["losses"] > 0 and blocks.SEEN["street"] > 0 and blocks.SEEN["shop"] > 0
    meta = torch.load(tmp_path / "run" / "retrieval-mine" / "model.pt", weights_only=True)["meta"]
    assert meta["pooling"] == "lse" and meta["training"]["loss"] == "contrastive"
    pooled = blocks.SEEN["pooled"]
    embedded = runner.invoke(app, ["--config", str(config), *sets, "embed", "--model", "mine", "--gallery-crops",
                                   "full", "--workers", "0"])
    assert embedded.exit_code == 0, embedded.output
    assert blocks.SEEN["pooled"] > pooled  # the embedding ran the user's pooling
    queries, rows = read_descriptors(tmp_path / "run" / "embed-mine", "queries")
    assert len(rows) > 0 and np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    metrics = json.loads((tmp_path / "run" / "retrieval-mine" / "metrics.json").read_text())
    assert metrics[-1]["loss"] is not None and np.isfinite(metrics[-1]["loss"])


def test_spawned_data_parallel_processes_register_the_configs_blocks_again(outside, tmp_path):
    """Two gloo processes (spawned afresh) train with the outside pooling and loss: each imports the config's
    imports before it builds anything."""
    from detret.config.pipeline import load_pipeline_config
    from detret.retrieval.train import run_train_retrieval

    config = _user_config(tmp_path)
    pcfg = load_pipeline_config(config, [*FAST, f"run_dir={tmp_path / 'run'}"])
    summary = run_train_retrieval(pcfg, "contrastive", "full", name="two", num_gpus=2)
    assert summary["processes"] == 2
    meta = torch.load(tmp_path / "run" / "retrieval-two" / "model.pt", weights_only=True)["meta"]
    assert meta["pooling"] == "lse" and meta["training"]["loss"] == "contrastive"

