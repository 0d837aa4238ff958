"""Load torch's own OpenMP runtime before numba's, so that torch keeps it.

Torch's Linux wheels carry their own GNU OpenMP runtime (``torch/lib/libgomp.so.1``); numba's OpenMP threading layer
links the system's (``libgomp.so.1.0.0``, whose soname is also ``libgomp.so.1``). The dynamic loader resolves a
library by soname against what is already loaded, so when a parallel kernel loads first, torch binds the system's
runtime instead of its own — and its CPU work runs several times slower there (the sentence embedder: 64 texts in
36 s against 5 s on 2 cores, measured; pytorch/pytorch#98836 describes the same clash). A stage that computes metrics
embeds and runs kernels in one process, so this is the common case, not a corner. Loading torch's runtime first, by
path, into the global namespace and without importing torch, makes it the one runtime of the process: torch binds its
own, and numba's layer binds its OpenMP symbols from it too (the system's file is still mapped, as numba's layer
names it, but shadowed; seen with LD_DEBUG=bindings) — one thread pool where there were two.

Imports: the standard library only.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
from pathlib import Path


def torch_openmp_path() -> Path | None:
    """Torch's bundled GNU OpenMP runtime when torch is installed with one under that soname, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "lib" / "libgomp.so.1"
    return path if path.is_file() else None


# Where distributions put the system's GNU OpenMP runtime (the one numba's layer links).
SYSTEM_OPENMP_PATHS = ("/usr/lib/x86_64-linux-gnu/libgomp.so.1", "/usr/lib/aarch64-linux-gnu/libgomp.so.1",
                       "/usr/lib64/libgomp.so.1", "/lib/x86_64-linux-gnu/libgomp.so.1")


def system_openmp_path() -> Path | None:
    """The system's libgomp.so.1 at a usual path, else None (for the test and benchmark that recreate the clash)."""
    return next((Path(p) for p in SYSTEM_OPENMP_PATHS if Path(p).is_file()), None)


def load_torch_openmp_first() -> bool:
    """Load torch's runtime unless torch is imported already (then it holds its own); True when loaded here."""
    if "torch" in sys.modules:
        return False
    path = torch_openmp_path()
    if path is None:
        return False
    try:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False  # a runtime that does not load here would not load for torch either; torch reports that itself
    return True
