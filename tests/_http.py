"""A tiny HTTP server on 127.0.0.1 for tests: serves in-memory files, can simulate 404s
and truncated bodies, tolerates HEAD and Range requests, and records every request."""

from __future__ import annotations

import http.server
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class Route:
    """What the server answers for one path."""

    body: bytes
    content_type: str = "video/mp4"
    truncate: bool = False  # declare the full Content-Length, send half, close


@dataclass
class FakeServer:
    """Routes (path -> Route) plus a log of (method, path) for every request received."""

    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, method: str | None = None, path: str | None = None) -> int:
        with self.lock:
            return sum(1 for m, p in self.requests
                       if (method is None or m == method) and (path is None or p == path))


def _make_handler(server: FakeServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def _answer(self, send_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            with server.lock:
                server.requests.append((self.command, path))
            route = server.routes.get(path)
            if route is None:
                self._not_found(send_body)
                return
            body, status, content_range = self._select_range(route)
            self.send_response(status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "none" if route.truncate else "bytes")
            if content_range:
                self.send_header("Content-Range", content_range)
            if route.truncate:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if not send_body:
                return
            try:
                self.wfile.write(body[: len(body) // 2] if route.truncate else body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _select_range(self, route: Route) -> tuple[bytes, int, str | None]:
            """Honour a simple ``Range: bytes=a-[b]`` (not for truncating routes)."""
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "").strip())
            if route.truncate or not match:
                return route.body, 200, None
            size = len(route.body)
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
            if start >= size:
                return b"", 416, f"bytes */{size}"
            return route.body[start:end + 1], 206, f"bytes {start}-{end}/{size}"

        def _not_found(self, send_body: bool) -> None:
            body = b"not found"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

    return Handler


@contextmanager
def serve(routes: dict[str, Route] | None = None) -> Iterator[FakeServer]:
    """Run a FakeServer on a random free port of 127.0.0.1 for the ``with`` block."""
    state = FakeServer(routes=dict(routes or {}))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
