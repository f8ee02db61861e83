import pytest

from detret.runs.stage import Stage, StaleArtifactError, require_fresh, stage_status


def _run(stage_dir, inp, config=None, force=False):
    st = Stage(stage_dir, "detect", config=config or {"k": 1}, inputs={"ann": inp}, command="detret detect")
    state = st.begin(force=force)
    if state != "done":
        (stage_dir / "out.jsonl").write_text("result\n")
        st.complete({"detections": "out.jsonl"})
    return state


@pytest.fixture
def inp(tmp_path):
    p = tmp_path / "ann.json"
    p.write_text("[]")
    return p


def test_lifecycle_done_then_reused(tmp_path, inp):
    d = tmp_path / "run" / "detect"
    assert stage_status(d).state == "missing"
    assert _run(d, inp) == "fresh"
    assert stage_status(d).state == "done"
    assert require_fresh(d).outputs["detections"]["path"] == "out.jsonl"
    assert _run(d, inp) == "done"


def test_interrupted_stage_is_running_and_resumes(tmp_path, inp):
    d = tmp_path / "detect"
    st = Stage(d, "detect", config={"k": 1}, inputs={"ann": inp}, command="detret detect")
    assert st.begin() == "fresh"
    status = stage_status(d)
    assert status.state == "running"
    with pytest.raises(StaleArtifactError, match="did not finish.*detret detect"):
        require_fresh(d)
    assert _run(d, inp) == "resume"
    assert stage_status(d).state == "done"


def test_changed_input_makes_stale_and_names_command(tmp_path, inp):
    d = tmp_path / "detect"
    _run(d, inp)
    inp.write_text('[{"changed": true}]')
    status = stage_status(d)
    assert status.state == "stale" and "input ann" in status.reasons[0]
    with pytest.raises(StaleArtifactError, match=r"stale.*Rerun `detret detect`"):
        require_fresh(d)
    with pytest.raises(StaleArtifactError, match="--force"):
        _run(d, inp)
    assert _run(d, inp, force=True) == "fresh"
    assert stage_status(d).state == "done"


def test_changed_config_refused(tmp_path, inp):
    d = tmp_path / "detect"
    _run(d, inp)
    with pytest.raises(StaleArtifactError, match="config differs"):
        _run(d, inp, config={"k": 2})


def test_tampered_output_is_stale_and_rebuilt(tmp_path, inp):
    d = tmp_path / "detect"
    _run(d, inp)
    (d / "out.jsonl").write_text("edited by hand\n")
    assert stage_status(d).state == "stale"
    assert _run(d, inp) == "fresh"  # same inputs: rebuild the damaged outputs
    assert (d / "out.jsonl").read_text() == "result\n"


def test_complete_requires_declared_outputs(tmp_path, inp):
    st = Stage(tmp_path / "s", "s", config={}, inputs={"ann": inp}, command="detret s")
    st.begin()
    with pytest.raises(RuntimeError, match="was not written"):
        st.complete({"x": "missing.npy"})


def test_merged_pipeline_config_written_beside_the_manifest(tmp_path, inp):
    from detret.config.pipeline import load_pipeline_config

    pcfg = load_pipeline_config(None, ["seed=5"], cwd=tmp_path)
    st = Stage(tmp_path / "s", "s", config={}, inputs={"ann": inp}, command="detret s", pipeline_config=pcfg)
    st.begin()
    text = (tmp_path / "s" / "pipeline_config.yaml").read_text()
    assert "seed: 5" in text and "run_dir:" in text


def test_leftover_temporaries_are_removed_but_not_those_of_nested_stages(tmp_path):
    from detret.runs.stage import Stage

    outer, inner = tmp_path / "data", tmp_path / "data" / "runs" / "embed-x"
    inner_stage = Stage(inner, "embed-x", config={}, inputs={})
    inner_stage.begin()
    (inner / ".gallery.abc.tmp.npy").write_bytes(b"being written by a running stage")
    (outer / "images").mkdir(parents=True)
    torn = outer / "images" / ".000000001.xyz.tmp.jpg"
    torn.write_bytes(b"torn")
    Stage(outer, "data-synth", config={}, inputs={}).begin()
    assert not torn.exists()
    assert (inner / ".gallery.abc.tmp.npy").exists()


def test_reuse_or_begin_and_finish(tmp_path, inp):
    """The stage contract's helper: the summary of a finished stage, None (with the state) otherwise."""
    import json

    from detret.runs.stage import require_built

    d = tmp_path / "detect"
    st = Stage(d, "detect", config={"k": 1}, inputs={"ann": inp}, command="detret detect")
    assert st.reuse_or_begin() is None and st.state == "fresh"
    (d / "out.jsonl").write_text("result\n")
    assert st.finish({"photos": 3}, {"detections": "out.jsonl"}) == {"photos": 3}
    assert json.loads((d / "summary.json").read_text()) == {"photos": 3}
    assert set(require_fresh(d).outputs) == {"detections", "summary"}
    again = Stage(d, "detect", config={"k": 1}, inputs={"ann": inp}, command="detret detect")
    assert again.reuse_or_begin() == {"photos": 3} and again.state == "done"
    # a trained model stays usable when what it was built from changes; its outputs must be intact
    inp.write_text("[1]")
    with pytest.raises(StaleArtifactError, match="input ann"):
        require_fresh(d)
    assert require_built(d).outputs["detections"]["path"] == "out.jsonl"
    (d / "out.jsonl").write_text("damaged\n")
    with pytest.raises(StaleArtifactError, match="output detections"):
        require_built(d)


def test_a_run_recorded_under_another_fingerprint_version_is_stale_and_says_so(tmp_path):
    """One fingerprint version: a run whose manifest has another one (or none: version 1) is stale in
    `status`, with the command that rebuilds it, and a stage refuses to reuse it without --force."""
    import json

    from detret.runs.manifest import FINGERPRINTS
    from detret.runs.stage import Stage, stage_status

    stage = Stage(tmp_path / "s", "s", config={"k": 1}, inputs={}, command="detret s --k 1")
    assert stage.begin() == "fresh"
    stage.complete({})
    assert stage_status(tmp_path / "s").state == "done"
    manifest = tmp_path / "s" / "manifest.json"
    recorded = json.loads(manifest.read_text())
    assert recorded["fingerprints"] == FINGERPRINTS
    del recorded["fingerprints"]  # as a detret before the version was recorded wrote it
    manifest.write_text(json.dumps(recorded))
    status = stage_status(tmp_path / "s")
    assert status.state == "stale" and status.command == "detret s --k 1"
    assert status.reasons == [f"made by a detret that fingerprints its runs differently (version 1, this detret "
                              f"{FINGERPRINTS}): rebuild it"]
    again = Stage(tmp_path / "s", "s", config={"k": 1}, inputs={}, command="detret s --k 1")
    with pytest.raises(StaleArtifactError, match="fingerprints its runs differently.*--force"):
        again.begin()
    assert again.begin(force=True) == "fresh"
