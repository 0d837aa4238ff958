"""Shared helpers for the loader tests: the shared benchmark files (read-only, skipped when absent) and small
files written per test."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
SHARED = REPO.parent / "shared" / "datasets"
TEST_DATA = REPO / "tests" / "test_data"


@pytest.fixture
def shared_file():
    """Path of a file under ../shared/datasets, or skip the test saying which file is missing."""

    def get(relative: str) -> Path:
        path = SHARED / relative
        if not path.is_file():
            pytest.skip(f"shared dataset file {path} is not present (this checkout has no ../shared/datasets)")
        return path

    return get


@pytest.fixture
def write(tmp_path):
    """Write lines (str or bytes) to a file under tmp_path and return its path."""

    def put(name: str, lines: list[str | bytes], *, end: bytes = b"\n") -> Path:
        path = tmp_path / name
        path.write_bytes(end.join(l if isinstance(l, bytes) else l.encode() for l in lines) + end)
        return path

    return put
