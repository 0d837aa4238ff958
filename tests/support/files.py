"""A loopback HTTP file server for fetch tests: serves files from a folder, honours Range requests (resume), and
can cut a response short once, as a dropped connection does."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FileServer:
    """Serve `root` on 127.0.0.1. `cut_after`: {file name: bytes}: the first GET of that file sends only that many
    bytes of the body, then closes the connection. `requests` records (path, Range header) per GET."""

    def __init__(self, root: Path, cut_after: dict[str, int] | None = None) -> None:
        self.root = Path(root)
        self.cut_after = dict(cut_after or {})
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                path = server.root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                if self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][6:].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cut_after.pop(name, None)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def manifests_folder(tmp_path: Path, monkeypatch: Any) -> Path:
    """An empty folder of source manifests that `fetch` reads instead of datasets/sources/, and a cache of its own in
    tmp_path (TASKDIV_CACHE); write the test's manifests into the folder returned."""
    from engine.inputs import fetch

    manifests = tmp_path / "sources"
    manifests.mkdir()
    monkeypatch.setattr(fetch, "SOURCES_DIR", manifests)
    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))
    return manifests
