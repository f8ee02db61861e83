"""Foundation descriptors: each library's model, saved in its own format, loads through detret's code and gives
the descriptors the library itself computes; the model folder's identity follows the weights, not the path;
nothing is downloaded (the hub cache is read offline, a missing model is a clear error)."""
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from detret.embed.inference import describe_crops
from detret.errors import InputError, MissingFileError
from detret.retrieval.backbones import PretrainedWeightsMissing
from detret.retrieval.descriptor_model import copy_model, load_descriptor_model, model_sha256
from detret.retrieval.foundation import FoundationSpec, load_foundation, materialise, read_folder
from detret.retrieval.foundation.sources import locate

from . import tiny_foundation as tiny

pytest.importorskip("open_clip")
pytest.importorskip("transformers")


def _crops(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(30, 90)), int(rng.integers(30, 90)), 3), dtype=np.uint8)
            for _ in range(n)]


def _open_clip_reference(source, crops):
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{source}")
    x = torch.stack([preprocess(Image.fromarray(c)) for c in crops])
    return model.eval().encode_image(x, normalize=True)


def _timm_reference(source, crops):
    import timm
    from timm.data import create_transform, resolve_model_data_config

    if source.is_dir():
        model = timm.create_model(f"local-dir:{source}", pretrained=True, num_classes=0)
    else:
        model = timm.create_model("test_vit", num_classes=0)
        state = torch.load(source, weights_only=True)
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    x = torch.stack([transform(Image.fromarray(c)) for c in crops])
    return F.normalize(model.eval()(x), dim=1)


def _hf_reference(source, crops):
    from transformers import AutoImageProcessor, AutoModel

    model, processor = AutoModel.from_pretrained(str(source)).eval(), AutoImageProcessor.from_pretrained(str(source))
    x = processor(images=[Image.fromarray(c) for c in crops], return_tensors="pt")["pixel_values"]
    if hasattr(model, "get_image_features"):   # projected CLIP embedding: visual_projection(pooled CLS)
        out = model.visual_projection(model.vision_model(pixel_values=x).pooler_output)
    else:
        out = model(pixel_values=x).pooler_output
    return F.normalize(out, dim=1)


FAMILIES = {
    "open_clip": ("open_clip:tiny", tiny.save_open_clip, "oc", _open_clip_reference),
    "timm-folder": ("timm:test_vit", tiny.save_timm, "timm", _timm_reference),
    "timm-file": ("timm:test_vit", tiny.save_timm_file, "test_vit.pth", _timm_reference),
    "hf-dinov2": ("hf:tiny-dinov2", tiny.save_hf_dinov2, "dino", _hf_reference),
    "hf-clip": ("hf:tiny-clip", tiny.save_hf_clip, "clip", _hf_reference),
}


def _materialised(tmp_path, family, seed=0, where="kept"):
    text, save, name, _ = FAMILIES[family]
    source = save(tmp_path / f"saved{seed}" / name, seed=seed)
    spec = FoundationSpec.parse(text)
    return source, materialise(spec, locate(spec, source), tmp_path / where / spec.safe_name)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_gives_the_library_own_descriptors(tmp_path, family):
    source, folder = _materialised(tmp_path, family)
    net = load_descriptor_model(folder.path)
    crops = _crops()
    ours = describe_crops([net], crops, [1.0], "cpu").numpy()
    with torch.no_grad():
        reference = FAMILIES[family][3](source, crops).numpy()
    assert ours.shape == reference.shape == (3, net.dim)
    np.testing.assert_allclose(ours, reference, atol=2e-5)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # the weights were really read: another seed's weights give other descriptors
    _, other = _materialised(tmp_path, family, seed=1, where="other")
    assert other.identity != folder.identity
    assert not np.allclose(describe_crops([load_foundation(other.path)], crops, [1.0], "cpu").numpy(), ours,
                           atol=1e-3)


def test_identity_follows_the_weights_not_the_path(tmp_path):
    source, folder = _materialised(tmp_path, "open_clip")
    moved = tmp_path / "elsewhere" / "copy"
    copy_model(folder.path, moved)
    assert model_sha256(moved) == model_sha256(folder.path) == folder.identity
    again = materialise(FoundationSpec.parse("open_clip:another-name"), locate(FoundationSpec.parse("open_clip:x"),
                                                                               source), tmp_path / "again")
    assert again.identity == folder.identity   # same files and layout: the same model, whatever its name
    weights = moved / "open_clip_model.safetensors"
    weights.unlink()   # (a hard link: write a new file, not through the link)
    shutil.copyfile(source / "open_clip_model.safetensors", weights)
    with open(weights, "r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\x01" * 8)
    with pytest.raises(InputError, match="sha256 differs"):
        read_folder(moved)
    manifest = json.loads((folder.path / "detret-foundation.json").read_text())
    manifest["files"]["open_clip_model.safetensors"] = "0" * 64
    (folder.path / "detret-foundation.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="identity does not match"):
        read_folder(folder.path)


def test_foundation_models_read_photos_at_their_own_size(tmp_path):
    _, folder = _materialised(tmp_path, "hf-dinov2")
    with pytest.raises(InputError, match="scales other than 1"):
        describe_crops([load_foundation(folder.path)], _crops(1), [1.0, 0.707], "cpu")


def _fake_hub_cache(cache, repo, files_from, revision="0123456789abcdef0123456789abcdef01234567"):
    """A Hugging Face cache entry of ``repo`` as huggingface_hub lays it out (refs/main -> snapshots/<rev>)."""
    entry = cache / f"models--{repo.replace('/', '--')}"
    snapshot = entry / "snapshots" / revision
    shutil.copytree(files_from, snapshot)
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(revision)
    return revision


def test_hub_names_are_read_from_the_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub

    cache = tmp_path / "hf-cache"
    source = tiny.save_open_clip(tmp_path / "oc")
    revision = _fake_hub_cache(cache, "someone/fashion-clip", source)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    spec = FoundationSpec.parse("open_clip:hf-hub:someone/fashion-clip")
    folder = materialise(spec, locate(spec), tmp_path / "kept")
    assert folder.manifest["origin"] == {"hub_repo": "someone/fashion-clip", "revision": revision}
    direct = materialise(spec, locate(spec, source), tmp_path / "direct")
    assert folder.identity == direct.identity   # the hub's copy and a local folder: one model
    missing = FoundationSpec.parse("open_clip:hf-hub:someone/not-cached")
    with pytest.raises(PretrainedWeightsMissing, match="someone/not-cached.*offline.*--weights"):
        locate(missing)


def test_bad_names_and_folders_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="LIBRARY:NAME"):
        FoundationSpec.parse("clip:ViT-B-32")
    with pytest.raises(PretrainedWeightsMissing, match="open_clip:ViT-B-32.*--weights"):
        locate(FoundationSpec.parse("open_clip:ViT-B-32"))   # a built-in architecture, no weights named
    with pytest.raises(InputError, match="not a built-in open_clip architecture"):
        locate(FoundationSpec.parse("open_clip:no-such-net"), tiny.save_timm_file(tmp_path / "w.pth"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="not a timm model folder"):
        locate(FoundationSpec.parse("timm:test_vit"), empty)
    (empty / "config.json").write_text("{}")
    with pytest.raises(MissingFileError, match="no weights file"):
        locate(FoundationSpec.parse("timm:test_vit"), empty)
    with pytest.raises(InputError, match="is a folder"):
        locate(FoundationSpec.parse("hf:x/y"), tiny.save_timm_file(tmp_path / "w2.pth"))
