"""The kernels package: its public names, and compiled code reused from the on-disk cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_the_cache_folder_is_named_by_every_kernel_source(tmp_path):
    # Numba keys a cached kernel on its own file only: jaccard.py's kernel kept an edited tokenize.py's old tokenizer.
    # The cache folder is named by a digest of all of them, so an edit to any file compiles every kernel afresh.
    import shutil

    from kernels._cache import HERE, sources_digest
    from kernels import jaccard

    folder = f"kernels-{sources_digest()}"
    assert Path(jaccard._jaccard_groups._cache._cache_path).parent.name == folder
    copy = tmp_path / "kernels"
    shutil.copytree(HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert sources_digest(copy) == sources_digest()
    tokenize = copy / "tokenize.py"
    tokenize.write_text(tokenize.read_text() + "\n# an edit\n")
    assert sources_digest(copy) != sources_digest()


@pytest.mark.slow  # compiles the kernels twice in fresh processes (~1 min on 2 cores)
def test_an_edited_tokenizer_reaches_the_jaccard_kernel_through_the_cache(tmp_path):
    import shutil

    from kernels._cache import HERE

    shutil.copytree(HERE, tmp_path / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    script = "import kernels; print(kernels.jaccard_matrices([['a✓b', 'a b']])[0][0, 1])"

    def jaccard_in_a_fresh_process() -> float:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
        return float(out.stdout)

    assert jaccard_in_a_fresh_process() == 0.0  # '✓' is a word character (a symbol, So): 'a✓b' is one token
    tokenize = tmp_path / "kernels" / "tokenize.py"
    source = tokenize.read_text()
    assert "SEPARATOR_RANGES" in source
    marker = "SEPARATOR_RANGES: tuple[tuple[int, int], ...] = ("
    tokenize.write_text(source.replace(marker, marker + "(0x2713, 0x2713), ", 1))  # check marks separate words
    assert jaccard_in_a_fresh_process() == 1.0  # the cached kernel would still say 0.0


@pytest.mark.slow  # compiles every kernel into an empty cache (~30 s on 2 cores)
def test_every_kernel_is_cached_in_the_digest_folder_even_when_numba_reloads_its_config(tmp_path):
    # Numba reloads its config from the environment during a compile when a NUMBA_* variable changed after it was
    # imported: CACHE_DIR went back to the user's, and every kernel defined after the first compile was cached outside
    # the digest's folder (the stale-tokenizer bug again for jaccard).
    script = (
        "import os, gc, numba\n"
        "os.environ['NUMBA_OPT'] = '2'\n"
        "import kernels\n"
        "from kernels._cache import sources_digest\n"
        "from numba.core.dispatcher import Dispatcher\n"
        "ours = [o for o in gc.get_objects()\n"
        "        if isinstance(o, Dispatcher) and o.py_func.__module__.startswith('kernels')]\n"
        "paths = {d.py_func.__name__: getattr(d._cache, '_cache_path', None) for d in ours}\n"
        "outside = [f for f, p in paths.items() if p is not None and f'kernels-{sources_digest()}' not in p]\n"
        "print(sum(p is not None for p in paths.values()), outside, os.environ['NUMBA_CACHE_DIR'])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO_ROOT,
                         env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)})
    count, outside, restored = out.stdout.split(" ", 2)
    assert int(count) >= 10 and outside == "[]" and restored.strip() == str(tmp_path)
