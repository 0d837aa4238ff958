"""Torch keeps its own OpenMP runtime in a process that has run a parallel kernel (kernels._openmp).

The real condition, recreated: a fresh process imports kernels and runs a parallel kernel (numba's OpenMP layer
loads the system's libgomp), then imports torch and runs an op. Without kernels._openmp torch would bind the
system's runtime — it resolves `libgomp.so.1` by soname — and embed several times slower; which runtime torch
holds is read from the process's memory map, not from a timing. The control shows that the map does tell the two
apart: a process that loads the system's runtime by hand first ends up without torch's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kernels._openmp import system_openmp_path, torch_openmp_path

REPO_ROOT = Path(__file__).resolve().parents[2]
TORCH_GOMP = torch_openmp_path()
pytestmark = pytest.mark.skipif(
    TORCH_GOMP is None, reason="torch is not installed here with its own libgomp.so.1 (a Linux wheel carries one)")

TAIL = (
    "import torch\n"
    "torch.set_num_threads(2)\n"
    "torch.ones(64, 64) @ torch.ones(64, 64)\n"
    "maps = open('/proc/self/maps').read()\n"
    f"print('torch-gomp' if {str(TORCH_GOMP)!r} in maps else 'other-gomp')\n"
)


def _run(head: str) -> str:
    done = subprocess.run([sys.executable, "-c", head + TAIL], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_torch_keeps_its_runtime_after_a_parallel_kernel():
    head = (
        "import kernels, numba\n"
        "kernels.jaccard_matrices([['a b c', 'b c d'], ['x y', 'y z', 'x z']])\n"
        "if numba.threading_layer() != 'omp':\n"
        "    print('layer', numba.threading_layer())\n"
        "    raise SystemExit(0)\n"
    )
    result = _run(head)
    if result.startswith("layer"):
        pytest.skip(f"numba chose its {result.split()[1]} threading layer here, not OpenMP: no clash to test")
    assert result == "torch-gomp"


def test_control_the_system_runtime_loaded_first_takes_torchs_place():
    system = system_openmp_path()
    if system is None:
        pytest.skip("no system libgomp.so.1 at the usual paths: the clash cannot arise here")
    head = f"import ctypes\nctypes.CDLL({str(system)!r}, mode=ctypes.RTLD_GLOBAL)\n"
    assert _run(head) == "other-gomp"
