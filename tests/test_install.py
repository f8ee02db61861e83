"""The libraries detret stands on are really installed and work together."""
import importlib.util
from pathlib import Path


def test_detectron2_builds_mask_rcnn_and_faiss_searches():
    path = Path(__file__).resolve().parents[1] / "tools" / "check_install.py"
    spec = importlib.util.spec_from_file_location("check_install", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main() == 0


def test_detectron2_is_the_real_package():
    import detectron2
    from detectron2.modeling import ROI_HEADS_REGISTRY

    assert "StandardROIHeads" in ROI_HEADS_REGISTRY
    assert Path(detectron2.__file__).parent.joinpath("model_zoo", "configs").is_dir()
