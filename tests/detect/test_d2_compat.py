"""detret.detect.d2_compat: the Detectron2 facts each workaround relies on, and the workarounds' results.

If an upgrade of Detectron2 (or fvcore) changes one of these facts, the matching test fails
and names the workaround to revisit, instead of the workaround silently doing nothing.
"""
import inspect

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import DefaultTrainer, defaults
from fvcore.common.checkpoint import Checkpointer

from detret.detect.d2_compat import AtomicDetectionCheckpointer, ddp_on_cpu, make_checkpointer_atomic


def test_trainer_builds_ddp_through_the_module_attribute_we_patch():
    init = inspect.getsource(DefaultTrainer.__init__)
    assert "create_ddp_model(" in init, "DefaultTrainer no longer calls create_ddp_model: revisit ddp_on_cpu"
    assert DefaultTrainer.__init__.__globals__ is vars(defaults), "create_ddp_model is looked up elsewhere"
    ddp = inspect.getsource(defaults.create_ddp_model)
    assert '"device_ids" not in kwargs' in ddp, "create_ddp_model sets device_ids differently: revisit ddp_on_cpu"


def test_ddp_on_cpu_patches_only_inside_the_block_and_only_for_several_cpu_processes():
    original = defaults.create_ddp_model
    with ddp_on_cpu("cpu"):  # one process here: nothing to patch
        assert defaults.create_ddp_model is original
    assert defaults.create_ddp_model is original


def test_trainer_hands_its_one_checkpointer_object_to_the_periodic_hook():
    assert "self.checkpointer = DetectionCheckpointer(" in inspect.getsource(DefaultTrainer.__init__)
    assert "PeriodicCheckpointer(self.checkpointer" in inspect.getsource(DefaultTrainer.build_hooks), \
        "the hook no longer holds the trainer's checkpointer: make_checkpointer_atomic would miss its saves"


def test_our_save_writes_what_fvcore_save_writes(tmp_path):
    assert list(inspect.signature(Checkpointer.save).parameters) == ["self", "name", "kwargs"]
    assert list(inspect.signature(Checkpointer.tag_last_checkpoint).parameters) == ["self", "last_filename_basename"]
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    AtomicDetectionCheckpointer(model, str(ours), optimizer=optimizer).save("model_0000009", iteration=9)
    DetectionCheckpointer(model, str(theirs), optimizer=optimizer).save("model_0000009", iteration=9)
    a = torch.load(ours / "model_0000009.pth", weights_only=False)
    b = torch.load(theirs / "model_0000009.pth", weights_only=False)
    assert a.keys() == b.keys() == {"model", "optimizer", "iteration"}
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (ours / "last_checkpoint").read_text() == (theirs / "last_checkpoint").read_text() == "model_0000009.pth"
    assert not list(ours.glob(".*tmp*"))
    # Detectron2 resumes from our files
    fresh = torch.nn.Linear(3, 2)
    resumed = DetectionCheckpointer(fresh, str(ours)).resume_or_load("", resume=True)
    assert resumed["iteration"] == 9 and torch.equal(fresh.weight, model.weight)


def test_make_checkpointer_atomic_retypes_the_trainers_object():
    class Trainer:
        checkpointer = DetectionCheckpointer(torch.nn.Linear(1, 1), "")

    trainer = Trainer()
    same = trainer.checkpointer
    make_checkpointer_atomic(trainer)
    assert trainer.checkpointer is same and type(same) is AtomicDetectionCheckpointer
