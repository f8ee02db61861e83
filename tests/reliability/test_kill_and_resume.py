"""Kill a long stage at a random moment (SIGKILL, no clean-up), rerun the same command:
it continues and ends with the artifacts of an uninterrupted run.

Each stage runs as `python -m detret ...` in a child process on a copy of the quick
demo's run directory without that stage's folder; the uninterrupted reference is the
demo's own folder. Kill moments are set by the stage's observed progress, never by a
clock, so that how busy the machine is does not matter: the first kill comes as soon
as the stage shows its first unit of work (a cache line, a shard, an index file, the
first log line of training, the untrained validation) and so always cuts it short;
the second waits for a seeded number of further units, or for the end of the process
(then files may be being renamed into place).
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from detret.runs.manifest import fingerprint, read_manifest
from detret.runs.stage import stage_status

# (stage folder, command arguments, outputs compared by value rather than bytes)
STAGES = [
    ("detector", ["train-detector"], {}),
    ("detect-shop", ["detect", "--split", "shop"], {}),
    ("retrieval-ap-crops", ["train-retrieval", "--loss", "ap", "--shop-crops", "detected"],
     {"metrics": "metrics without wall times", "summary": "summary without wall times"}),
    ("embed-tri-crops", ["embed", "-m", "tri-crops", "--gallery-crops", "detected"], {}),
    ("search-Crops", ["search", "Crops", "--k", "10"], {}),
]
KILLS_PER_STAGE = 2
POLL_S = 0.002


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:  # not there yet, or renamed away between the listing and the read
        return 0


def progress_units(stage_dir: Path) -> int:
    """Units of work a stage has left on disk so far; grows while it runs, whatever the stage:
    detector output (photos.partial*.jsonl lines), descriptor shards (parts/), FAISS indexes
    (indexes/), Detectron2's training log (log.txt lines), a retrieval run's metrics.json
    (written after the untrained validation) and checkpoints."""
    units = sum(_lines(p) for p in stage_dir.glob("photos.partial*.jsonl"))
    units += len(list(stage_dir.glob("parts/*.npy"))) + len(list(stage_dir.glob("indexes/*.faiss")))
    units += _lines(stage_dir / "log.txt")
    units += sum((stage_dir / name).is_file() for name in ("metrics.json", "checkpoint_last.pt"))
    units += len(list(stage_dir.glob("model_*.pth")))
    return units


def _kill_after(proc, stage_dir: Path, more_units: int, timeout_s: float = 300) -> bool:
    """SIGKILL `proc` once the stage shows `more_units` units of work beyond what it had; True if it
    was still running then (it was cut short), False if it ended first."""
    start = progress_units(stage_dir)
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and progress_units(stage_dir) < start + more_units:
        if time.monotonic() > deadline:
            raise AssertionError(f"{stage_dir}: no progress within {timeout_s} s")
        time.sleep(POLL_S)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    return True


def _strip_times(obj):
    if isinstance(obj, dict):
        return {k: _strip_times(v) for k, v in obj.items() if k not in ("seconds", "seconds_total")}
    if isinstance(obj, list):
        return [_strip_times(v) for v in obj]
    return obj


def _run(args, config, run_dir, env):
    cmd = [sys.executable, "-m", "detret", "--config", str(config), "--set", f"run_dir={run_dir}",
           "--set", "device=cpu"] + args
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("folder,args,by_value", STAGES, ids=[s[0] for s in STAGES])
def test_killed_stage_resumes_to_the_uninterrupted_artifacts(demo_quick, tmp_path, folder, args, by_value):
    out, result = demo_quick
    reference_run = result["run_dir"]
    run_dir = tmp_path / "runs"
    shutil.copytree(reference_run, run_dir, ignore=lambda d, names: [folder] if Path(d) == reference_run else [])
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    rng = random.Random(folder)
    killed_mid_run = 0
    for attempt in range(KILLS_PER_STAGE):
        proc = _run(args, result["config"], run_dir, env)
        # first kill: at the first unit of work; then after 1-3 more units, or when the process ends
        more = 1 if attempt == 0 else rng.choice([1, 2, 3, 10**9])
        killed_mid_run += _kill_after(proc, run_dir / folder, more)
        proc.wait()
        # whatever the moment, nothing half-written passes for finished work
        assert stage_status(run_dir / folder).state in ("running", "done", "missing")
    assert killed_mid_run >= 1  # the first kill came while the stage was working
    final = _run(args, result["config"], run_dir, env)
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err[-2000:]
    assert stage_status(run_dir / folder).state == "done"
    reference = read_manifest(reference_run / folder)
    for name, fp in reference.outputs.items():
        got, want = run_dir / folder / fp["path"], reference_run / folder / fp["path"]
        if name in by_value:
            assert _strip_times(json.loads(got.read_text())) == _strip_times(json.loads(want.read_text())), name
        elif got.suffix in (".pt", ".pth") and fingerprint(got)["sha256"] != fp["sha256"]:
            a, b = torch.load(got, weights_only=False), torch.load(want, weights_only=False)
            state_a, state_b = a.get("model", a.get("state_dict")), b.get("model", b.get("state_dict"))
            assert state_a.keys() == state_b.keys()
            assert all(torch.equal(state_a[k], state_b[k]) for k in state_a), f"{name}: weights differ"
        elif got.is_file() and got.suffix in (".yaml", ".json", ".jsonl") and fingerprint(got)["sha256"] != fp["sha256"]:
            # text that names its own run directory (Detectron2's OUTPUT_DIR): equal up to that path
            assert got.read_text().replace(str(run_dir), "<run>") == \
                want.read_text().replace(str(reference_run), "<run>"), f"{name} ({fp['path']}) differs"
        else:
            assert fingerprint(got)["sha256"] == fp["sha256"], f"{name} ({fp['path']}) differs after the kills"
    # leftovers of the interrupted runs are gone
    assert not list((run_dir / folder).glob(".*.tmp*")), "temporary files left behind"
