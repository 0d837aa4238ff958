"""Where numba caches the compiled kernels: a folder named by a digest of every kernel source and numba's version.

Numba keys a cache entry on the file that defines the kernel only, but a kernel compiles in the helpers and constants
of the files it imports (``jaccard.py`` holds ``tokenize.py``'s tokenizer): after ``tokenize.py`` changed — a
``git pull`` of an editable install — the cached Jaccard kernel kept the old tokenizer and disagreed with
``tokenize`` and the references, silently. A folder per digest of all of ``kernels/*.py`` makes any edit compile
afresh (old folders are left, small and unread). The folder is under ``NUMBA_CACHE_DIR`` where one is set, else
``kernels/__pycache__``; only these kernels are cached there (the setting is restored after they are defined).

Imports: the standard library and numba only.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent


def sources_digest(folder: Path = HERE) -> str:
    """16 hex digits over the names and bytes of every ``*.py`` in `folder`, and numba's version."""
    import numba

    h = hashlib.sha256(numba.__version__.encode())
    for path in sorted(folder.glob("*.py")):
        h.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def versioned_cache() -> Iterator[Path]:
    """Define the kernels (import their modules) inside this: their cache lives in the digest's folder."""
    import os

    from numba.core import config

    before, before_env = config.CACHE_DIR, os.environ.get("NUMBA_CACHE_DIR")
    folder = Path(before or HERE / "__pycache__") / f"kernels-{sources_digest()}"
    # The environment too: numba reloads its config from the environment during a compile when a NUMBA_* variable
    # changed since it was imported, which would set CACHE_DIR back for the kernels defined after that compile.
    os.environ["NUMBA_CACHE_DIR"] = config.CACHE_DIR = str(folder)
    try:
        yield folder
    finally:
        config.CACHE_DIR = before
        if before_env is None:
            os.environ.pop("NUMBA_CACHE_DIR", None)
        else:
            os.environ["NUMBA_CACHE_DIR"] = before_env
