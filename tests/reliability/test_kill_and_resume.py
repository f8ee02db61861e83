"""Kill a long stage at a random moment (SIGKILL, no clean-up), rerun the same command:
it continues and ends with the artifacts of an uninterrupted run.

Each stage runs as `python -m detret ...` in a child process on a copy of the quick
demo's run directory without that stage's folder; the uninterrupted reference is the
demo's own folder. Kill moments are drawn by a seeded RNG between the stage's start
(its manifest appears) and 1.2x its measured duration, so some kills land early,
some mid-way and some after the work, while files are being renamed into place.
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

# (stage folder, command arguments, timings.json step, outputs compared by value rather than bytes)
STAGES = [
    ("detector", ["train-detector"], "train the detector", {}),
    ("detect-shop", ["detect", "--split", "shop"], "detect shop photos", {}),
    ("retrieval-ap-crops", ["train-retrieval", "--loss", "ap", "--shop-crops", "detected"], "train ap-crops",
     {"metrics": "metrics without wall times", "summary": "summary without wall times"}),
    ("embed-tri-crops", ["embed", "-m", "tri-crops", "--gallery-crops", "detected"], "embed tri-crops", {}),
    ("search-Crops", ["search", "Crops", "--k", "10"], "search Crops", {}),
]
KILLS_PER_STAGE = 2


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


@pytest.mark.parametrize("folder,args,step,by_value", STAGES, ids=[s[0] for s in STAGES])
def test_killed_stage_resumes_to_the_uninterrupted_artifacts(demo_quick, tmp_path, folder, args, step, by_value):
    out, result = demo_quick
    reference_run = result["run_dir"]
    timings = {s["step"]: s for s in json.loads((out / "demo" / "timings.json").read_text())["steps"]}
    duration = timings[step].get("seconds_when_run", timings[step]["seconds"])
    run_dir = tmp_path / "runs"
    shutil.copytree(reference_run, run_dir, ignore=lambda d, names: [folder] if Path(d) == reference_run else [])
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    rng = random.Random(folder)
    killed_mid_run = 0
    for attempt in range(KILLS_PER_STAGE):
        proc = _run(args, result["config"], run_dir, env)
        manifest = run_dir / folder / "manifest.json"
        deadline = time.monotonic() + 120
        while proc.poll() is None and not manifest.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # the first kill lands inside the stage's measured duration (so at least one really
        # cuts it short); later ones anywhere, finished stages included
        time.sleep(rng.uniform(0.0, (0.8 if attempt == 0 else 1.2) * duration))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_mid_run += 1
        proc.wait()
        # whatever the moment, nothing half-written passes for finished work
        assert stage_status(run_dir / folder).state in ("running", "done", "missing")
    if duration > 1.0:  # a stage of a few seconds or more was really cut short at least once
        assert killed_mid_run >= 1
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
