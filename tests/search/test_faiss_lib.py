"""detret.search.faiss_lib: which OpenBLAS kernels faiss's bundled BLAS is told to use."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detret.search.faiss_lib import cpu_flags, faiss, faiss_blas_core, openblas_coretype


def test_coretype_follows_the_cpu_flags():
    assert openblas_coretype({"avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx2", "fma"}) == "SkylakeX"
    assert openblas_coretype({"avx512f", "avx2", "fma"}) == "Haswell"  # AVX-512 without BW/VL: no SkylakeX kernels
    assert openblas_coretype({"avx2", "fma"}) == "Haswell"
    assert openblas_coretype({"sse4_2"}) is None


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx2", "fma"}
    assert cpu_flags(tmp_path / "missing") == set()


def expected_core(environ=os.environ):
    """The kernels faiss's OpenBLAS should use in this process: the user's OPENBLAS_CORETYPE when the environment
    sets it (some machines do: older OpenBLAS builds compute wrong results on their CPUs), else the CPU's."""
    return environ.get("OPENBLAS_CORETYPE") or openblas_coretype(cpu_flags())


def test_faiss_blas_uses_the_cpus_kernels():
    expected = expected_core()
    core = faiss_blas_core()
    if core is not None and expected is not None:  # a wheel's bundled OpenBLAS on an AVX2/AVX-512 CPU
        assert core.lower() == expected.lower()
    # FAISS still gives exact results with these kernels: the nearest neighbour of a gallery row is itself
    xb = np.random.default_rng(0).standard_normal((500, 64)).astype(np.float32)
    index = faiss.IndexFlatL2(64)
    index.add(xb)
    assert (index.search(xb[:50], 1)[1][:, 0] == np.arange(50)).all()


def _in_child(env):
    code = ("import os; from detret.search.faiss_lib import faiss_blas_core; "
            "print(faiss_blas_core(), os.environ.get('OPENBLAS_CORETYPE', '-'))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


def test_the_environment_is_restored_after_the_import():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    core, seen_after = _in_child(env)
    assert seen_after == "-"
    expected = openblas_coretype(cpu_flags())
    if core != "None" and expected is not None:
        assert core == expected


def test_a_users_own_coretype_wins():
    core, kept = _in_child(dict(os.environ, OPENBLAS_CORETYPE="Haswell"))
    assert kept == "Haswell"
    assert core in ("Haswell", "None")  # None: faiss links a BLAS other than a bundled OpenBLAS


def test_faiss_imported_first_gets_a_warning_naming_the_fix():
    flags = cpu_flags()
    expected = openblas_coretype(flags)
    code = ("import logging; logging.basicConfig(); import faiss; import detret.search.faiss_lib as f; "
            "print('CORE', f.faiss_blas_core())")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    core = run.stdout.split("CORE")[-1].split()[0]
    if expected is not None and core == "Prescott":  # the wheel's OpenBLAS does not know this CPU
        assert f"OPENBLAS_CORETYPE={expected}" in run.stderr
    else:
        assert "generic kernels" not in run.stderr


@pytest.mark.parametrize("coretype", ["Prescott", ""])
def test_the_kernel_test_holds_where_the_environment_sets_the_coretype(coretype):
    """Some CI machines set OPENBLAS_CORETYPE (to a kernel family other than the CPU's best, or empty): the
    test above must hold there too, as this process's own suite run there would."""
    env = {**os.environ, "OPENBLAS_CORETYPE": coretype, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          f"{__file__}::test_faiss_blas_uses_the_cpus_kernels"], env=env, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stdout[-3000:]
