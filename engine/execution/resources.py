"""Peak memory of a run: the resident memory of this process and every process it started (Ray's raylet and
workers in an embedded Ray), sampled in a background thread.

A sum of RSS counts shared pages once per process, so it is an upper bound; it is what a laptop user runs out of.
On a cluster only the driver's node is seen.
"""

from __future__ import annotations

import threading

import psutil


def tree_rss_bytes(root: psutil.Process | None = None) -> int:
    root = root or psutil.Process()
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class PeakMemory:
    """Context manager sampling the process tree's RSS every `interval_s`; `.peak_bytes` holds the maximum."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="taskdiv-peak-memory", daemon=True)

    def _sample(self) -> None:
        root = psutil.Process()
        while True:
            self.peak_bytes = max(self.peak_bytes, tree_rss_bytes(root))
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
