"""taskdiv's entry point.

    python engine/run.py                              the built-in demo on the embedded default (CPU, local Ray)
    python engine/run.py --config run.yaml            any run
    python engine/run.py --config run.yaml --set n=3 --set sampling.max_tokens=64
    ray submit cluster.yaml engine/run.py -- --config taskdiv/configs/gpu.yaml   on a Ray cluster (docs/cluster.md)

A rerun with the same run_dir resumes: finished shards are reused and only the rest is computed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (`python engine/run.py`, `ray submit … engine/run.py`), Python puts this file's folder first on
# sys.path; our module names (tables, config, report…) would then shadow installed packages of the same name, here
# and in Ray workers, which inherit the driver's path. Put the repository root there instead, which also makes a
# plain checkout importable without installing.
_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path.pop(0)
_ROOT = _HERE.parent
if (_ROOT / "engine" / "__init__.py").is_file() and str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from engine.cli import main  # noqa: E402  (the environment is prepared in main, before Ray or torch start)

if __name__ == "__main__":
    sys.exit(main())
