"""Self-describing checkpoints and missing-weights errors."""
import pytest
import torch

from detret.retrieval.backbones import PretrainedWeightsMissing
from detret.retrieval.model import build_retrieval_net, load_checkpoint, save_checkpoint


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
    assert model.meta["backbone_source"] == f"torchvision: {tmp_path / 'r18.pth'}"
    assert build_retrieval_net("resnet18", pretrained=False).meta["backbone_source"] == "random initialisation"


def test_the_configs_architecture_choices_are_the_buildable_ones():
    from detret.config.choices import Architecture
    from detret.retrieval.backbones import ARCHITECTURES

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


def test_a_checkpoint_whose_meta_lacks_a_key_is_refused_naming_it(tmp_path):
    from detret.errors import InputError

    model = build_retrieval_net("resnet18", dim=16, pretrained=False).eval()
    save_checkpoint(tmp_path / "m.pt", model)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    del raw["meta"]["pooling"]
    torch.save(raw, tmp_path / "old.pt")
    with pytest.raises(InputError, match="old.pt: the checkpoint's meta lacks pooling"):
        load_checkpoint(tmp_path / "old.pt")


def test_unknown_pooling_is_refused():
    from detret.errors import InputError

    with pytest.raises(InputError, match="pooling 'avg' is not one of gem, mac, spoc, rmac"):
        build_retrieval_net("resnet18", dim=8, pretrained=False, pooling="avg")


def test_two_streams_embed_each_domain_and_survive_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_retrieval_net("resnet18", dim=16, pretrained=False, streams="domain",
                                attributes={"colour": ["#000000", "#ffffff"], "badge": ["none", "star", "dot"]}).eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert torch.allclose(model(x, "street"), model(x, "shop"))  # both streams start alike
        model.street.whiten.weight.mul_(-1.0)
        street, shop = model(x, "street"), model(x, "shop")
        assert torch.allclose(street, model.street(x)) and torch.allclose(shop, model(x))
        assert not torch.allclose(street, shop)
        desc, logits = model.attribute_logits(x, "street")
    assert torch.allclose(desc, street) and {k: v.shape for k, v in logits.items()} == {
        "colour": (2, 2), "badge": (2, 3)}
    save_checkpoint(tmp_path / "two.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "two.pt")
    assert loaded.meta["streams"] == "domain" and loaded.attributes["badge"] == ["none", "star", "dot"]
    with torch.no_grad():
        assert torch.allclose(loaded(x, "street"), street, atol=1e-6)
        assert torch.allclose(loaded(x, "shop"), shop, atol=1e-6)
    with pytest.raises(ValueError, match="domain 'user' is not one of shop, street"):
        model(x, "user")


def test_both_streams_start_from_a_shared_model(tmp_path):
    from detret.errors import InputError
    from detret.retrieval.model import initialise_from

    torch.manual_seed(1)
    shared = build_retrieval_net("resnet18", dim=16, pretrained=False).eval()
    save_checkpoint(tmp_path / "shared.pt", shared)
    torch.manual_seed(2)
    two = build_retrieval_net("resnet18", dim=16, pretrained=False, streams="domain",
                              attributes={"pattern": ["plain", "stripes"]}).eval()
    heads_before = two.heads["pattern"].weight.clone()
    initialise_from(two, tmp_path / "shared.pt")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(two(x, "street"), shared(x), atol=1e-6)
        assert torch.allclose(two(x, "shop"), shared(x), atol=1e-6)
    assert torch.equal(two.heads["pattern"].weight, heads_before)  # the shared model had no heads
    other = build_retrieval_net("resnet18", dim=8, pretrained=False)
    with pytest.raises(InputError, match="shared.pt: init_from dim is 16, the network being trained has 8"):
        initialise_from(other, tmp_path / "shared.pt")


@pytest.mark.parametrize("name, channels", [("timm:resnet18", 512), ("timm:vit_tiny_patch16_224", 192)])
def test_timm_backbones_give_a_feature_map_to_any_pooling(tmp_path, name, channels):
    """A timm CNN's map and a ViT's patch tokens laid on their grid, for inputs of any size."""
    torch.manual_seed(0)
    model = build_retrieval_net(name, dim=16, pretrained=False, pooling="rmac").eval()
    assert model.meta["architecture"] == name and model.meta["feat_dim"] == channels
    with torch.no_grad():
        fmap = model.features(torch.randn(2, 3, 70, 50))
        d = model(torch.randn(2, 3, 70, 50))
    assert fmap.dim() == 4 and fmap.shape[1] == channels and d.shape == (2, 16)
    save_checkpoint(tmp_path / "t.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "t.pt")
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_vit_tokens_are_laid_on_the_patch_grid():
    """The map's cell (i, j) is the token of patch (i, j): checked against timm's own token sequence."""
    torch.manual_seed(0)
    model = build_retrieval_net("timm:vit_tiny_patch16_224", dim=8, pretrained=False).eval()
    timm_model = model.features.model
    x = torch.randn(1, 3, 48, 80)  # 3 x 5 patches of 16 pixels
    with torch.no_grad():
        tokens = timm_model.forward_features(x)[0, timm_model.num_prefix_tokens:]
        fmap = model.features(x)[0]
    assert fmap.shape[1:] == (3, 5)
    assert torch.allclose(fmap[:, 1, 4], tokens[1 * 5 + 4])


def test_timm_weights_missing_offline_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("detret.retrieval.backbones._timm_cached_file", lambda cfg: None)
    with pytest.raises(PretrainedWeightsMissing, match="timm:resnet18 are not in the Hugging Face cache"):
        build_retrieval_net("timm:resnet18", pretrained=True)
    with pytest.raises(ValueError, match="timm has no model 'no_such_net'"):
        build_retrieval_net("timm:no_such_net", pretrained=False)


def test_timm_weights_from_a_local_file(tmp_path):
    import timm

    torch.manual_seed(3)
    ref = timm.create_model("resnet18", pretrained=False)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    model = build_retrieval_net("timm:resnet18", pretrained=True, backbone_weights=str(tmp_path / "r18.pth"))
    assert torch.equal(model.features.model.conv1.weight, ref.conv1.weight)
    assert model.meta["backbone_source"] == f"timm: {tmp_path / 'r18.pth'}"
