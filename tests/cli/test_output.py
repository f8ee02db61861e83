"""What a command prints: its own output only, unless --debug (a fresh interpreter per case, as a user runs it)."""
import subprocess
import sys

import pytest


def _detret(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "detret", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_help_prints_nothing_but_the_help(tmp_path):
    code, out, err = _detret("--help", cwd=tmp_path)
    assert code == 0 and "Usage" in out and "train-detector" in out
    assert err == ""


@pytest.mark.parametrize("args", [
    ["search", "x"],                                            # imports FAISS (its loader logs six INFO lines)
    ["--set", "data.street2shop.root=missing", "detect"],       # imports torch and Detectron2 (FutureWarnings)
], ids=["faiss", "detectron2"])
def test_a_failing_command_prints_its_error_and_no_library_noise(tmp_path, args):
    code, out, err = _detret("--set", f"run_dir={tmp_path / 'run'}", *args, cwd=tmp_path)
    assert code == 2
    lines = err.splitlines()
    assert lines and lines[0].startswith("error: ") and lines[1:] == ["(run with --debug to see where it was raised)"]
    assert "Warning" not in err and "INFO" not in err


def test_debug_shows_the_libraries_and_the_traceback(tmp_path):
    code, _, err = _detret("--debug", "--set", f"run_dir={tmp_path / 'run'}", "search", "x", cwd=tmp_path)
    assert code == 1  # the traceback of the user error, as Python prints it
    assert "faiss.loader" in err and "Traceback" in err and "StaleArtifactError" in err
