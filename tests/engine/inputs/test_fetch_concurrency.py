"""Two processes fetching one source at once, for real: two Python processes and a loopback server that holds its
answer back until the second process is either waiting for the source's lock or asking the server too. Before, both
wrote the same <file>.part: one failed its sha256, the other died on a FileNotFoundError that was no FetchError."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from engine.inputs import fetch
from tests.support.files import manifests_folder

REPO = Path(__file__).resolve().parents[3]
ROWS = [{"problem": f"What is {k} + {k}? " + "x" * 40, "answer": str(2 * k), "subject": "Algebra", "level": 1 + k % 5,
         "unique_id": f"test/algebra/{k}.json"} for k in range(600)]
DATA = "".join(json.dumps(r) + "\n" for r in ROWS).encode()  # about 90 kB, sent in pieces

CHILD = """
import logging, sys, time
from pathlib import Path
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from engine.inputs import fetch
fetch.SOURCES_DIR = Path(sys.argv[1])
go = Path(sys.argv[2])
while not go.exists():  # imported and ready: the test says when to start
    time.sleep(0.01)
try:
    path = fetch.ensure("math500", offline=False, progress=False)
    print("ok", fetch.sha256_of(path))
except Exception as exc:
    print("failed", type(exc).__name__, isinstance(exc, fetch.FetchError), exc)
"""


class HeldServer:
    """Serves DATA for any path: the headers and a first piece at once, the rest once `release` is set — by the
    test, or by a second request (two requests: both are answered, as a server does)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(self.path)
                if len(server.requests) > 1:
                    server.release.set()
                self.send_response(200)  # no Range support: every request starts over, as the old code's rival did
                self.send_header("Content-Length", str(len(DATA)))
                self.end_headers()
                self.wfile.write(DATA[:4096])
                self.wfile.flush()
                server.release.wait(60)
                for start in range(4096, len(DATA), 8192):
                    self.wfile.write(DATA[start:start + 8192])
                    self.wfile.flush()
                    time.sleep(0.01)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_two_processes_fetching_one_source_both_get_it_downloaded_once(tmp_path, monkeypatch):
    server = HeldServer()
    manifests = tmp_path / "sources"
    manifests.mkdir()
    (manifests / "math500.yaml").write_text(yaml.safe_dump({
        "name": "math500", "title": "test math", "license": "MIT", "homepage": "https://example.org",
        "loader": "math500", "main": "test.jsonl",
        "files": [{"name": "test.jsonl", "url": f"{server.url}/test.jsonl",
                   "sha256": hashlib.sha256(DATA).hexdigest(), "size": len(DATA)}]}))
    (tmp_path / "child.py").write_text(CHILD)
    env = {**os.environ, "TASKDIV_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    children = []
    try:
        for k in (1, 2):
            err = open(tmp_path / f"err{k}", "w")
            children.append((subprocess.Popen(
                [sys.executable, str(tmp_path / "child.py"), str(manifests), str(tmp_path / f"go{k}")],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True), err))
        (tmp_path / "go1").touch()
        assert _wait_for(lambda: server.requests, 120), "the first process never asked the server"
        (tmp_path / "go2").touch()
        # The first download is half done. The second process now waits for the lock (and says so), or — as before
        # the lock — asks the server too, which releases both answers at once.
        waiting = _wait_for(lambda: "another process is fetching it" in (tmp_path / "err2").read_text()
                            or len(server.requests) > 1, 120)
        assert waiting, "the second process neither waited nor asked"
        server.release.set()
        outputs = []
        for child, err in children:
            out, _ = child.communicate(timeout=120)
            err.close()
            outputs.append(out.strip())
    finally:
        for child, err in children:
            if child.poll() is None:
                child.kill()
                child.wait()
            err.close()
        server.close()
    digest = hashlib.sha256(DATA).hexdigest()
    assert outputs == [f"ok {digest}", f"ok {digest}"], (outputs, (tmp_path / "err2").read_text()[-2000:])
    assert server.requests == ["/test.jsonl"]  # the second process used what the first fetched
    folder = tmp_path / "cache" / "datasets" / "math500"
    assert sorted(p.name for p in folder.iterdir()) == [fetch.FETCHED, "test.jsonl"]  # no .part left behind
    assert (folder / "test.jsonl").read_bytes() == DATA


def test_the_lock_is_reentrant_in_a_thread_and_held_apart_by_another(tmp_path, monkeypatch):
    # ensure() holds the lock and calls fetch(), which takes it again: a second flock on a new descriptor in the same
    # process would wait for itself. Another thread (as another process) waits its turn.
    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))
    order = []

    def take() -> None:
        with fetch._source_lock("math500"):
            order.append("other")

    with fetch._source_lock("math500"):
        with fetch._source_lock("math500"):
            order.append("inner")
        other = threading.Thread(target=take)
        other.start()
        other.join(0.5)
        assert other.is_alive() and order == ["inner"]  # still waiting while this thread holds it
        order.append("released")
    other.join(10)
    assert order == ["inner", "released", "other"]
    assert (tmp_path / "cache" / "datasets" / fetch.LOCKS / "math500.lock").is_file()
    assert not (tmp_path / "cache" / "datasets" / "math500").exists()  # the source folder is not made for the lock


def test_offline_a_source_being_fetched_is_waited_for_and_one_never_fetched_writes_nothing(tmp_path, monkeypatch):
    manifests = manifests_folder(tmp_path, monkeypatch)
    (manifests / "math500.yaml").write_text(yaml.safe_dump({
        "name": "math500", "title": "test math", "license": "MIT", "homepage": "https://example.org",
        "loader": "math500", "main": "test.jsonl",
        "files": [{"name": "test.jsonl", "url": "http://127.0.0.1:9/test.jsonl",
                   "sha256": hashlib.sha256(DATA).hexdigest(), "size": len(DATA)}]}))
    with pytest.raises(fetch.NotCached, match="fetch math500"):
        fetch.ensure("math500", offline=True)
    assert not (tmp_path / "cache").exists()  # a run that only reads the cache wrote nothing to it

    have = tmp_path / "have"
    have.mkdir()
    (have / "test.jsonl").write_bytes(DATA)
    found = []
    waiter = threading.Thread(target=lambda: found.append(fetch.ensure("math500", offline=True)))
    with fetch._source_lock("math500"):  # a fetch in progress (here: this thread's import)
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # offline, it waits for the fetch rather than stop the run as "not cached"
        fetch.import_from("math500", have)
    waiter.join(10)
    assert found == [tmp_path / "cache" / "datasets" / "math500" / "test.jsonl"]
