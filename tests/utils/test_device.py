import pytest
import torch

from detret.utils.device import resolve_device


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_missing_gpu_is_a_clear_error_before_work():
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        with pytest.raises(ValueError, match=f"only {n} CUDA device"):
            resolve_device(f"cuda:{n}")
    else:
        with pytest.raises(ValueError, match="sees no CUDA GPU.*device=cpu"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="not one of"):
        resolve_device("gpu")
