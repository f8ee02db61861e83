"""The command line: help texts, data synth, status, config errors."""
import json

import pytest
from typer.testing import CliRunner

from detret.cli.app import USER_ERRORS, app, main

runner = CliRunner()

SUBCOMMANDS = [["data"], ["data", "synth"], ["status"], ["config"], ["config", "show"], ["config", "keys"],
               ["catalogue"], ["catalogue", "create"], ["catalogue", "add"], ["catalogue", "remove"],
               ["catalogue", "info"], ["catalogue", "reindex"], ["serve"], ["export"], ["train-retrieval"],
               ["combine"], ["embed-df2"], ["eval-df2"], ["blocks"]]


def test_root_help_lists_built_commands_only():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("data", "status", "config", "--config", "--set"):
        assert name in result.output
    assert "not implemented" not in result.output.lower()


@pytest.mark.parametrize("cmd", SUBCOMMANDS, ids=lambda c: " ".join(c))
def test_every_subcommand_has_help(cmd):
    result = runner.invoke(app, cmd + ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and len(result.output.strip().splitlines()) > 4


def _run_main(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr()


def test_bad_override_is_one_line_error(capsys):
    code, out = _run_main(["--set", "no_such_key=1", "config", "show"], capsys)
    assert code == 2
    assert "unknown key 'no_such_key'" in out.err and "run_dir" in out.err and "Traceback" not in out.err


def test_synth_then_status(tmp_path, capsys):
    out = tmp_path / "synth"
    code, printed = _run_main(["data", "synth", "--out", str(out), "--products", "22", "--distractors", "0",
                               "--modanet-images", "6", "--seed", "1"], capsys)
    assert code in (0, None), printed.err
    assert (out / "detret.yaml").is_file() and (out / "manifest.json").is_file()
    assert "test pairs" in printed.out
    cfg = str(out / "detret.yaml")
    code, printed = _run_main(["--config", cfg, "status", "--json"], capsys)
    assert code in (0, None), printed.err
    rows = json.loads(printed.out)
    assert [(r["stage"], r["state"]) for r in rows] == [("data-synth", "done")]
    code, printed = _run_main(["--config", cfg, "config", "show"], capsys)
    assert str(out / "street2shop") in printed.out
    # An edited annotation file makes the dataset stale; status says so and fails.
    (out / "street2shop/meta/json/test_pairs_tops.json").write_text("[]\n")
    code, printed = _run_main(["--config", cfg, "status", "--json"], capsys)
    assert code == 1
    row = json.loads(printed.out)[0]
    assert row["state"] == "stale" and "data synth" in row["command"]
    # Regenerating with other settings into the same folder is refused, naming --force.
    code, printed = _run_main(["data", "synth", "--out", str(out), "--products", "23", "--distractors", "0",
                               "--modanet-images", "6"], capsys)
    assert code == 2 and "--force" in printed.err


def test_invalid_option_values(capsys):
    code, out = _run_main(["data", "synth", "--test-fraction", "1.5"], capsys)
    assert code == 2 and "test-fraction" in out.err


def test_user_errors_cover_config_and_staleness():
    from detret.config.pipeline import ConfigError
    from detret.runs.stage import StaleArtifactError

    assert issubclass(ConfigError, USER_ERRORS) and issubclass(StaleArtifactError, USER_ERRORS)


def test_a_bug_shows_its_traceback_not_a_user_error(monkeypatch, tmp_path):
    """Only detret's own error classes become one-line messages; a ValueError from a bug propagates."""
    from detret.cli import status_cmd

    def broken(cfg):
        raise ValueError("a programming error")

    monkeypatch.setattr(status_cmd, "run_status", broken)
    with pytest.raises(ValueError, match="a programming error"):
        main(["--set", f"run_dir={tmp_path}", "status"])


CHOICE_OPTIONS = [
    (["embed", "--precision", "fp16"], ["fp32", "bf16"]),
    (["embed", "--gallery-crops", "cropped"], ["detected", "full"]),
    (["embed-df2", "-m", "x", "--split", "val"], ["train", "validation", "test"]),
    (["detect", "--subset", "val"], ["test", "train"]),
    (["detect", "--precision", "fp16"], ["fp32", "bf16"]),
    (["data", "check", "--dataset", "modanet", "--root", ".", "--split", "val"], ["train", "validation", "test"]),
]


@pytest.mark.parametrize("args,valid", CHOICE_OPTIONS, ids=[" ".join(a) for a, _ in CHOICE_OPTIONS])
def test_every_choice_option_refuses_a_wrong_value_naming_the_valid_ones(args, valid):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert all(v in result.output for v in valid), result.output


@pytest.mark.parametrize("args,valid", [
    (["train-retrieval", "--loss", "arcface"], "--loss 'arcface' is not one of triplet, ap, hardest"),
    (["search", "x", "--rerank", "qe"], "re-ranking 'qe' is not one of none, aqe, dba, diffusion"),
    (["--set", "retrieval.train.pooling=avg", "train-retrieval", "--loss", "ap"],
     "retrieval.train.pooling 'avg' is not one of gem, mac, spoc, rmac"),
])
def test_a_building_blocks_name_is_checked_against_its_registry(args, valid, capsys, tmp_path):
    code, out = _run_main(["--set", f"run_dir={tmp_path}", *args], capsys)
    assert code == 2 and valid in out.err, out.err


def test_serve_binds_loopback_unless_told_otherwise_and_names_a_missing_catalogue(capsys, tmp_path):
    import inspect

    from detret.cli.serve_cmd import serve

    assert inspect.signature(serve).parameters["host"].default.default == "127.0.0.1"
    code, out = _run_main(["serve", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and f"{tmp_path / 'nowhere'}: no such catalogue" in out.err and "Traceback" not in out.err


def test_export_writes_the_network_of_a_run_or_a_file(tmp_path, capsys):
    import torch

    from detret.retrieval.model import build_retrieval_net, save_checkpoint

    torch.manual_seed(0)
    run = tmp_path / "run"
    save_checkpoint(run / "retrieval-tri-full" / "model.pt", build_retrieval_net("resnet18", 8, pretrained=False,
                                                                                 image_size=32))
    code, printed = _run_main(["--set", f"run_dir={run}", "export", "tri-full", "--format", "torchscript",
                               "--out", str(tmp_path / "ts")], capsys)
    assert code in (0, None), printed.err
    assert (tmp_path / "ts" / "shop.ts").is_file() and "descriptors [N, 8]" in printed.out
    meta = json.loads((tmp_path / "ts" / "meta.json").read_text())
    assert meta["source"] == str(run / "retrieval-tri-full" / "model.pt") and meta["output"]["dim"] == 8
    code, printed = _run_main(["--set", f"run_dir={run}", "export", "ap-full", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "'ap-full' is neither a checkpoint file nor a trained retrieval run" in printed.err
    assert "trained here: tri-full" in printed.err


def test_eval_out_name_must_be_a_folder_name(capsys):
    code, printed = _run_main(["eval", "tri-full", "--out-name", "../elsewhere"], capsys)
    assert code == 2 and "--out-name must be a folder name" in printed.err
