"""Self-describing checkpoints and missing-weights errors."""
import pytest
import torch

from detret.retrieval.model import (
    PretrainedWeightsMissing,
    build_retrieval_net,
    load_checkpoint,
    save_checkpoint,
)


def test_descriptors_are_l2_normalised_with_configured_dim():
    torch.manual_seed(0)
    model = build_retrieval_net("resnet18", dim=32, pretrained=False).eval()
    with torch.no_grad():
        d = model(torch.randn(3, 3, 64, 48))
    assert d.shape == (3, 32) and torch.allclose(d.norm(dim=1), torch.ones(3), atol=1e-5)


def test_checkpoint_rebuilds_the_model_from_the_file_alone(tmp_path):
    torch.manual_seed(0)
    model = build_retrieval_net("resnet18", dim=24, pretrained=False, image_size=96, resize="square",
                                training={"loss": "ap"}).eval()
    with torch.no_grad():
        model.pool.p.fill_(4.5)
    save_checkpoint(tmp_path / "m.pt", model, epoch=3)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # no pickled classes inside
    assert raw["meta"]["architecture"] == "resnet18" and raw["epoch"] == 3
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt")
    assert loaded.meta == model.meta and loaded.meta["image_size"] == 96 and loaded.meta["training"] == {"loss": "ap"}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
    assert loaded.pool.p.item() == pytest.approx(4.5)


def test_bad_checkpoints_and_missing_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a detret retrieval checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(PretrainedWeightsMissing, match="missing.pth"):
        build_retrieval_net("resnet18", pretrained=True, backbone_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="unknown architecture"):
        build_retrieval_net("vgg16", pretrained=False)


def test_local_backbone_weights_are_loaded(tmp_path):
    import torchvision

    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    model = build_retrieval_net("resnet18", pretrained=True, backbone_weights=str(tmp_path / "r18.pth"))
    assert torch.equal(model.features[0].weight, ref.conv1.weight)


def test_the_configs_architecture_choices_are_the_buildable_ones():
    from detret.config.choices import Architecture
    from detret.retrieval.model import ARCHITECTURES

    assert {a.value for a in Architecture} == set(ARCHITECTURES)


@pytest.mark.parametrize("pooling", ["mac", "spoc", "rmac"])
def test_other_poolings_are_recorded_and_rebuilt_from_the_checkpoint(pooling, tmp_path):
    from detret.retrieval.pooling import MAC, RMAC, SPoC

    torch.manual_seed(0)
    model = build_retrieval_net("resnet18", dim=16, pretrained=False, pooling=pooling).eval()
    assert isinstance(model.pool, {"mac": MAC, "spoc": SPoC, "rmac": RMAC}[pooling])
    save_checkpoint(tmp_path / "m.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    assert loaded.meta["pooling"] == pooling and type(loaded.pool) is type(model.pool)
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)


def test_a_checkpoint_from_before_the_pooling_choice_loads_as_gem(tmp_path):
    """Checkpoints written before `pooling` was a choice (meta without it, or "gem") load unchanged."""
    torch.manual_seed(0)
    model = build_retrieval_net("resnet18", dim=16, pretrained=False).eval()
    save_checkpoint(tmp_path / "m.pt", model)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    del raw["meta"]["pooling"]
    torch.save(raw, tmp_path / "old.pt")
    loaded, _ = load_checkpoint(tmp_path / "old.pt")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)


def test_unknown_pooling_is_refused():
    from detret.errors import InputError

    with pytest.raises(InputError, match="pooling 'avg' is not one of gem, mac, spoc, rmac"):
        build_retrieval_net("resnet18", dim=8, pretrained=False, pooling="avg")
