from pathlib import Path

import pytest

from detret.config.pipeline import (
    CHOICE_KEYS,
    ConfigError,
    find_config_file,
    load_pipeline_config,
    valid_keys,
)
from detret.runs.manifest import config_hash


def test_defaults_are_valid_and_paths_absolute(tmp_path):
    cfg = load_pipeline_config(None, cwd=tmp_path)
    assert cfg.device == "auto"
    assert Path(cfg.run_dir) == tmp_path / "runs" / "default"
    assert cfg.data.street2shop.root is None
    assert cfg.data.modanet.holdout_fraction == 0.05


def test_file_paths_are_relative_to_the_file_and_overrides_to_cwd(tmp_path):
    conf_dir = tmp_path / "project"
    conf_dir.mkdir()
    path = conf_dir / "detret.yaml"
    path.write_text("run_dir: out\ndata:\n  street2shop:\n    root: s2s\n  modanet:\n    holdout_fraction: 0.1\n")
    cwd = tmp_path / "elsewhere"
    cfg = load_pipeline_config(path, ["data.modanet.images=imgs", "seed=7"], cwd=cwd)
    assert Path(cfg.run_dir) == conf_dir / "out"
    assert Path(cfg.data.street2shop.root) == conf_dir / "s2s"
    assert Path(cfg.data.modanet.images) == cwd / "imgs"
    assert cfg.data.modanet.holdout_fraction == 0.1
    assert cfg.seed == 7


def test_override_beats_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("device: cpu\nseed: 3\n")
    cfg = load_pipeline_config(path, ["seed=4"], cwd=tmp_path)
    assert cfg.seed == 4 and cfg.device == "cpu"


def test_unknown_key_lists_valid_keys_of_its_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  street2shop:\n    rot: x\n")
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(path, cwd=tmp_path)
    msg = str(err.value)
    assert str(path) in msg and "data.street2shop.rot" in msg and "data.street2shop.root" in msg


def test_unknown_top_level_override_lists_all_keys(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(None, ["rundir=x"], cwd=tmp_path)
    for key in valid_keys():
        assert key in str(err.value)


def test_wrong_type_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="seed"):
        load_pipeline_config(None, ["seed=abc"], cwd=tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  modanet:\n    holdout_fraction: [1, 2]\n")
    with pytest.raises(ConfigError, match="holdout_fraction"):
        load_pipeline_config(path, cwd=tmp_path)


def test_bad_device_and_malformed_input(tmp_path):
    with pytest.raises(ConfigError, match="device"):
        load_pipeline_config(None, ["device=gpu"], cwd=tmp_path)
    with pytest.raises(ConfigError, match="key=value"):
        load_pipeline_config(None, ["seed"], cwd=tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_dir: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline_config(bad, cwd=tmp_path)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_pipeline_config(listy, cwd=tmp_path)


def test_retrieval_models_list(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("retrieval:\n  models:\n    - {name: tri, checkpoint: a.pt}\n    - {name: ap}\n")
    cfg = load_pipeline_config(path, cwd=tmp_path)
    assert [m.name for m in cfg.retrieval.models] == ["tri", "ap"]
    assert cfg.retrieval.models[1].checkpoint is None
    path.write_text("retrieval:\n  models:\n    - {name: tri, ckpt: a.pt}\n")
    with pytest.raises(ConfigError, match="ckpt"):
        load_pipeline_config(path, cwd=tmp_path)


def test_find_config_file_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DETRET_CONFIG", raising=False)
    assert find_config_file(None) is None
    (tmp_path / "detret.yaml").write_text("seed: 1\n")
    assert find_config_file(None) == tmp_path / "detret.yaml"
    other = tmp_path / "other.yaml"
    other.write_text("seed: 2\n")
    monkeypatch.setenv("DETRET_CONFIG", str(other))
    assert find_config_file(None) == other
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("seed: 3\n")
    assert find_config_file(explicit) == explicit
    with pytest.raises(ConfigError, match="not found"):
        find_config_file(tmp_path / "missing.yaml")
    monkeypatch.setenv("DETRET_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match="DETRET_CONFIG"):
        find_config_file(None)


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_fuzzed_config_files_give_config_errors_only(tmp_path_factory):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6)
    tree = st.recursive(leaves, lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["run_dir", "device", "seed", "data", "modanet", "root", "detector", "opts", "x"]), c,
        max_size=3), max_leaves=10)

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(doc=st.dictionaries(st.sampled_from(["run_dir", "device", "seed", "data", "detector", "retrieval",
                                                "nope"]), tree, max_size=4))
    def check(doc):
        import yaml

        path = tmp_path_factory.mktemp("cfg") / "detret.yaml"
        path.write_text(yaml.safe_dump(doc))
        try:
            load_pipeline_config(path, cwd=path.parent)
        except ConfigError as exc:
            assert str(path) in str(exc) or "device" in str(exc)

    check()


@pytest.mark.parametrize("key", sorted(CHOICE_KEYS))
def test_every_choice_key_refuses_a_typo_naming_the_valid_values(key, tmp_path):
    valid = [member.value for member in CHOICE_KEYS[key]]
    typo = valid[0][:-1] + ("y" if valid[0].endswith("x") else "x")   # ("box" -> "boy", not "box" again)
    with pytest.raises(ConfigError) as exc:
        load_pipeline_config(None, [f"{key}={typo}"], cwd=tmp_path)
    assert key in str(exc.value) and all(v in str(exc.value) for v in valid)
    # the same from a config file, which the message names
    path = tmp_path / "detret.yaml"
    section, leaf = key.rsplit(".", 1)
    text = ""
    for depth, part in enumerate(section.split(".")):
        text += "  " * depth + part + ":\n"
    text += "  " * (depth + 1) + f"{leaf}: nonsense\n"
    path.write_text(text)
    with pytest.raises(ConfigError, match=str(path)):
        load_pipeline_config(path, cwd=tmp_path)


def test_negatives_typo_names_offline_and_batch(tmp_path):
    """The issue's example: `ofline` used to select batch-hard negatives silently."""
    with pytest.raises(ConfigError, match="'ofline'.*offline, batch"):
        load_pipeline_config(None, ["retrieval.train.negatives=ofline"], cwd=tmp_path)


def test_architecture_is_a_torchvision_name_or_a_timm_model(tmp_path):
    assert load_pipeline_config(None, ["retrieval.train.architecture=timm:convnext_tiny"], cwd=tmp_path) \
        .retrieval.train.architecture == "timm:convnext_tiny"
    with pytest.raises(ConfigError, match=r"retrieval.train.architecture \(or timm:<model name>\) 'resnet5' "
                                          r"is not one of resnet18"):
        load_pipeline_config(None, ["retrieval.train.architecture=resnet5"], cwd=tmp_path)
    with pytest.raises(ConfigError, match="bad value for 'retrieval.train.architecture'"):
        load_pipeline_config(None, ["retrieval.train.architecture=timm:"], cwd=tmp_path)
