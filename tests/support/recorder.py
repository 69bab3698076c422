"""A tiny local HTTP server that records requests and answers with scripted status codes
(stands in for the ECS agent and for webhook receivers)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    url: str
    statuses: list[int] = field(default_factory=list)  # answered in order; then 200
    requests: list[Recorded] = field(default_factory=list)
    redirect_to: str = "/elsewhere"


@contextmanager
def recorder(
    statuses: list[int] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Recorder]:
    """`host`, `port`: where to listen (any 127.x.y.z works on Linux; port 0 picks a free one);
    `tls`: a server context to speak https with."""
    state = Recorder(url="", statuses=list(statuses or []))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                state.requests.append(
                    Recorded(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("location", state.redirect_to)
            self.send_header("content-length", "0")
            self.end_headers()

        do_GET = do_PUT = do_POST = _handle  # noqa: N815 (http.server's naming)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    state.url = f"{scheme}://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
