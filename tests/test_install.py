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


# The first releases without the known vulnerabilities a client of `detret serve` can reach (issue 26).
SAFE_FLOORS = {"pillow": "10.3", "starlette": "0.49.1", "python-multipart": "0.0.18"}


def test_dependency_floors_exclude_versions_with_reachable_cves():
    """pyproject's floors admit no release below the fixes, and what is installed satisfies them."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    requirements = {Requirement(r).name.lower(): Requirement(r) for r in project["project"]["dependencies"]}
    for name, floor in SAFE_FLOORS.items():
        spec = requirements[name].specifier
        below = Version(floor).release[:-1] + (Version(floor).release[-1] - 1,)
        assert not spec.contains(".".join(map(str, below)) + ".99"), f"{name}: {spec} admits a vulnerable release"
        assert spec.contains(floor)
        assert Version(metadata.version(name)) >= Version(floor)
