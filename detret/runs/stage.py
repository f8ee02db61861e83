"""A stage of the pipeline run in its own folder, and the freshness of its artifacts.

Usage inside a stage implementation::

    stage = Stage(stage_dir, "detect-shop", command="detret detect --split shop",
                  config=cfg_dict, inputs={"weights": w, "annotations": a})
    reused = stage.reuse_or_begin(force=force)   # refuses stale leftovers, writes a "running" manifest
    if reused is not None:
        return reused                            # done earlier with the same config and inputs: its summary
    ...write artifacts (atomically); stage.state says "fresh" or "resume"...
    return stage.finish(summary, outputs={"detections": "detections.jsonl"})  # summary.json, manifest complete

and before reading another stage's artifacts::

    require_fresh(upstream_dir)     # raises StaleArtifactError naming the command to rerun
    require_built(model_dir)        # a trained model: its files intact, whatever its training data became

States reported by :func:`stage_status`: ``missing`` (never run), ``running``
(started and not finished: interrupted, or under way), ``stale`` (an input or
an output no longer matches its manifest), ``done``.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ..errors import DetretError
from .atomic import atomic_write_json, atomic_write_text, is_temporary
from .manifest import (
    FINGERPRINTS,
    Manifest,
    another_version,
    changed_entries,
    config_hash,
    fingerprint,
    git_state,
    read_manifest,
    write_manifest,
)

logger = logging.getLogger(__name__)

SUMMARY_NAME = "summary.json"


class StaleArtifactError(DetretError, RuntimeError):
    """An artifact no longer matches what it was built from; the message names the command to rerun."""


@dataclass
class StageStatus:
    stage: str
    stage_dir: Path
    state: str  # missing | running | stale | done
    reasons: List[str] = field(default_factory=list)
    command: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.state == "done"

    @property
    def outputs_intact(self) -> bool:
        """Finished, and only its inputs changed since: what it wrote is still what it wrote
        (a trained model stays usable, see :func:`require_built`)."""
        return self.state == "done" or (self.state == "stale" and bool(self.reasons)
                                        and all(r.startswith("input ") for r in self.reasons))


def invoked_command() -> str:
    """The command line that started this process, for manifests ("what to rerun")."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("detret", "detret.exe")):
        argv[0] = "detret"
    return shlex.join(argv)


def stage_status(stage_dir: Path, stage: Optional[str] = None) -> StageStatus:
    stage_dir = Path(stage_dir)
    name = stage or stage_dir.name
    try:
        manifest = read_manifest(stage_dir)
    except ValueError as exc:
        return StageStatus(name, stage_dir, "stale", [str(exc)])
    if manifest is None:
        return StageStatus(name, stage_dir, "missing")
    if manifest.state != "complete":
        return StageStatus(manifest.stage, stage_dir, "running", ["started but not finished"], manifest.command)
    reasons = [] if manifest.fingerprints == FINGERPRINTS else [another_version(manifest)]
    reasons += [f"input {p}" for p in changed_entries(manifest.inputs)]
    reasons += [f"output {p}" for p in changed_entries(manifest.outputs, base_dir=stage_dir)]
    state = "stale" if reasons else "done"
    return StageStatus(manifest.stage, stage_dir, state, reasons, manifest.command)


def require_fresh(stage_dir: Path, what: str = "") -> Manifest:
    """The manifest of a finished, up-to-date stage; otherwise StaleArtifactError saying what to rerun."""
    status = stage_status(stage_dir)
    label = what or f"stage '{status.stage}'"
    if status.state == "missing":
        raise StaleArtifactError(f"{label} has not been run: no manifest in {stage_dir}")
    if status.state == "running":
        raise StaleArtifactError(
            f"{label} in {stage_dir} did not finish; rerun `{status.command}` (it resumes where it stopped)"
        )
    if status.state == "stale":
        raise StaleArtifactError(
            f"{label} in {stage_dir} is stale: {'; '.join(status.reasons)}. Rerun `{status.command}` "
            "(add --force to rebuild it)"
        )
    manifest = read_manifest(stage_dir)
    assert manifest is not None
    return manifest


def require_built(stage_dir: Path, what: str = "") -> Manifest:
    """The manifest of a finished stage whose outputs are intact, even if its inputs changed since.

    For trained models (a detector, a retrieval network): a model stays a valid model whatever
    happens later to the photos it was trained on. Stages that use it record the model file's
    own hash among their inputs, so they are rebuilt when the model changes, not when its
    training data does; ``detret status`` still reports the training stage as stale."""
    status = stage_status(stage_dir)
    if status.state == "stale" and status.outputs_intact:
        logger.info("%s: %s was trained on inputs that have changed since (%s); using it as it is",
                    stage_dir, what or status.stage, "; ".join(status.reasons))
        return read_manifest(stage_dir)
    return require_fresh(stage_dir, what)


class Stage:
    """Bookkeeping of one stage run: config, input fingerprints, manifest lifecycle."""

    def __init__(
        self,
        stage_dir: Path,
        stage: str,
        *,
        config: Mapping[str, Any],
        inputs: Mapping[str, Path],
        command: Optional[str] = None,
        pipeline_config: Optional[Any] = None,
    ) -> None:
        self.stage_dir = Path(stage_dir)
        self.pipeline_config = pipeline_config  # written beside the manifest (not hashed: `config` is)
        self.stage = stage
        self.config = dict(config)
        self.input_paths = {k: Path(v) for k, v in inputs.items()}
        self.command = command or invoked_command()
        self._manifest: Optional[Manifest] = None
        self.state: Optional[str] = None  # set by begin(): "fresh", "resume" or "done"

    def _new_manifest(self) -> Manifest:
        return Manifest(
            stage=self.stage,
            command=self.command,
            config=self.config,
            config_sha256=config_hash(self.config),
            inputs={k: fingerprint(p) for k, p in sorted(self.input_paths.items())},
            git=git_state(),
        )

    def begin(self, *, force: bool = False) -> str:
        """Start (or resume) the stage; returns "fresh", "resume" or "done".

        - no manifest, or ``force``: start afresh ("fresh"); the caller clears
          its old partial outputs when forced;
        - a "running" manifest with the same config and inputs: "resume";
        - a "complete" manifest with the same config, inputs and outputs: "done"
          (the caller may skip the work);
        - anything else: StaleArtifactError, because the folder holds artifacts
          built from something else, and silently mixing them is what we refuse.
        """
        self.state = self._begin(force)
        return self.state

    def _begin(self, force: bool) -> str:
        fresh = self._new_manifest()
        if self.pipeline_config is not None:
            from omegaconf import OmegaConf

            atomic_write_text(self.stage_dir / "pipeline_config.yaml",
                              "# The merged pipeline config this stage ran with.\n"
                              + OmegaConf.to_yaml(self.pipeline_config, resolve=True))
        try:
            old = read_manifest(self.stage_dir)
        except ValueError:
            old = None
            if not force:
                raise
        if old is not None and not force:
            differences = [] if old.fingerprints == FINGERPRINTS else [another_version(old)]
            if old.config_sha256 != fresh.config_sha256:
                differences.append("its config differs")
            for name in sorted(set(old.inputs) | set(fresh.inputs)):
                if old.inputs.get(name, {}).get("sha256") != fresh.inputs.get(name, {}).get("sha256"):
                    differences.append(f"input {name} differs")
            if differences:
                raise StaleArtifactError(
                    f"{self.stage_dir} holds a '{old.stage}' run built differently ({'; '.join(differences)}). "
                    f"Rerun `{self.command}` with --force to rebuild it, or choose another run directory"
                )
            if old.state == "complete":
                if not changed_entries(old.outputs, base_dir=self.stage_dir):
                    self._manifest = old
                    return "done"
                # Outputs damaged since: rebuild them from the same inputs.
            else:
                self._manifest = fresh
                write_manifest(self.stage_dir, fresh)
                self._remove_torn_temporaries()
                return "resume"
        self._manifest = fresh
        write_manifest(self.stage_dir, fresh)
        self._remove_torn_temporaries()
        return "fresh"

    def _remove_torn_temporaries(self) -> None:
        """Temporary files of atomic writes cut short by a kill (``.<name>.*.tmp*``, see atomic.py).

        Only this stage writes into its folder, so at its start any such file is a leftover.
        Sub-folders holding a manifest of their own are other stages (a dataset folder may
        hold the run directory) and are left alone: they may be running."""
        if not self.stage_dir.is_dir():
            return
        for root, dirs, files in os.walk(self.stage_dir):
            dirs[:] = [d for d in dirs if not (Path(root) / d / "manifest.json").exists()]
            for name in files:
                if is_temporary(name):
                    (Path(root) / name).unlink()

    def complete(self, outputs: Mapping[str, str]) -> Manifest:
        """Record the outputs (paths relative to the stage folder) and mark the stage complete."""
        if self._manifest is None:
            raise RuntimeError("Stage.complete() called before Stage.begin()")
        recorded = {}
        for name, rel in sorted(outputs.items()):
            fp = fingerprint(self.stage_dir / rel)
            if fp["kind"] == "missing":
                raise RuntimeError(f"stage {self.stage}: declared output {name} ({self.stage_dir / rel}) was not written")
            fp["path"] = str(rel)
            recorded[name] = fp
        self._manifest.outputs = recorded
        self._manifest.state = "complete"
        self._manifest.created_utc = ""
        write_manifest(self.stage_dir, self._manifest)
        return self._manifest

    def reuse_or_begin(self, *, force: bool = False, summary_name: str = SUMMARY_NAME) -> Optional[Dict[str, Any]]:
        """:meth:`begin` the stage; when it is already done, the summary it recorded (JSON), else None.

        ``self.state`` then says "fresh" (start from nothing) or "resume" (finish an interrupted run)."""
        if self.begin(force=force) != "done":
            return None
        logger.info("%s: complete and up to date, reused", self.stage_dir)
        return json.loads((self.stage_dir / summary_name).read_text())

    def finish(self, summary: Dict[str, Any], outputs: Mapping[str, str],
               summary_name: str = SUMMARY_NAME) -> Dict[str, Any]:
        """Write ``summary`` as JSON (an output too) and :meth:`complete` the stage; returns the summary."""
        atomic_write_json(self.stage_dir / summary_name, summary)
        self.complete({**outputs, "summary": summary_name})
        return summary
