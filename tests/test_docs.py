"""The documentation site builds with `mkdocs build --strict`: every page in the navigation, every link
and anchor found, every generated block (commands, config keys, HTTP API, building blocks, measured
figures) rendered from the code and from the files the benchmarks wrote."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly(tmp_path):
    out = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    cli = (out / "reference" / "cli" / "index.html").read_text()
    assert "detret train-retrieval" in cli and "--loss" in cli  # generated from the typer application
    http = (out / "reference" / "http" / "index.html").read_text()
    assert "/api/search" in http and "SearchAnswer" in http     # generated from the OpenAPI document
    assert "retrieval.train.pooling" in (out / "reference" / "config" / "index.html").read_text()
    assert "batch-hard" in (out / "extending" / "index.html").read_text()  # the registries


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "bash tools/install.sh && .venv/bin/detret demo" in readme
    assert "bash tools/install.sh && .venv/bin/python -m pytest" in readme
