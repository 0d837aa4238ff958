"""The kernels package: its public names, and compiled code reused from the on-disk cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kernels

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_public_api_is_exported():
    for name in kernels.__all__:
        if name != "KERNELS":
            assert callable(getattr(kernels, name)), name


def test_the_name_table_pairs_each_kernel_with_its_reference():
    assert {"jaccard_matrices", "cosine_matrices", "compression_ratio", "count_components_batched"} <= set(kernels.KERNELS)
    for name, (kernel, reference) in kernels.KERNELS.items():
        assert kernel is getattr(kernels, name) and callable(reference) and reference.__name__.endswith("reference")


def test_second_process_loads_every_kernel_from_the_cache():
    """Importing compiles (or loads) every kernel; a fresh process must find them all cached."""
    script = (
        "import gc, kernels\n"
        "from numba.core.dispatcher import Dispatcher\n"
        "ours = [o for o in gc.get_objects()\n"
        "        if isinstance(o, Dispatcher) and o.py_func.__module__.startswith('kernels')]\n"
        "print(len(ours), sum(sum(d.stats.cache_misses.values()) for d in ours))\n"
    )
    subprocess.run([sys.executable, "-c", "import kernels"], check=True, cwd=REPO_ROOT)  # fills the cache if cold
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    n_dispatchers, n_misses = map(int, completed.stdout.split())
    assert n_dispatchers >= 10
    assert n_misses == 0
