"""A local stand-in for the weights' hosts: the Hugging Face Hub's `resolve` URLs (what
`huggingface_hub` asks `HF_ENDPOINT` for) and plain URLs under `/<host>/<path>` (what a
`MUSETALK_WEIGHTS_MIRROR` serves), with HTTP Range, and faults on demand: a connection dropped
after some bytes, or corrupted bytes of the right length."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")


@dataclass
class Served:
    content: bytes
    drop_after: list[int] = field(default_factory=list)  # per GET, in order: bytes then close
    corrupt: bool = False


@dataclass
class WeightsServer:
    hub: dict[tuple[str, str, str], Served] = field(default_factory=dict)  # repo, rev, file
    plain: dict[str, Served] = field(default_factory=dict)  # "host/path?query"
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    url: str = ""

    def find(self, path: str) -> tuple[Served | None, dict[str, str]]:
        match = _RESOLVE.match(urlsplit(path).path)
        if match and (match["repo"], match["revision"], match["filename"]) in self.hub:
            served = self.hub[(match["repo"], match["revision"], match["filename"])]
            return served, {
                "X-Repo-Commit": match["revision"],
                "ETag": f'"{hashlib.sha256(served.content).hexdigest()}"',
            }
        return self.plain.get(path.lstrip("/")), {}

    def gets(self, needle: str) -> list[str | None]:
        """The Range headers of the GETs whose path contains `needle`."""
        return [rng for method, path, rng in self.requests if method == "GET" and needle in path]


class _Handler(BaseHTTPRequestHandler):
    server_state: WeightsServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        state = self.server_state
        range_header = self.headers.get("Range")
        state.requests.append((self.command, self.path, range_header))
        served, headers = state.find(self.path)
        if served is None:
            self.send_error(404)
            return
        content = served.content
        if served.corrupt:
            content = bytes([content[0] ^ 0xFF]) + content[1:]
        start = 0
        status = 200
        if range_header and body:
            start = int(re.match(r"bytes=(\d+)-", range_header)[1])  # type: ignore[index]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
        payload = content[start:]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not body:
            return
        if served.drop_after:
            payload = payload[: served.drop_after.pop(0)]
            self.close_connection = True
        self.wfile.write(payload)


@contextmanager
def weights_server() -> Iterator[WeightsServer]:
    state = WeightsServer()
    handler = type("Handler", (_Handler,), {"server_state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
