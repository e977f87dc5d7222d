"""Shared test fixtures, in one place.

- Real data: ``../shared`` beside the project root. Tests that need it take the
  ``shared_data`` (or ``omg_manifests``) fixture and skip with a reason where it is absent
  (a user's clone).
- ``write_video`` / ``tiny_video``: small synthetic videos written with OpenCV (no data needed).
- ``loopback``: a tiny HTTP server on 127.0.0.1 (free port, stopped by the test) that serves
  in-memory files, can answer 404 or a truncated body, honours HEAD and Range, and records
  every request. ``with loopback({"/a.mp4": data}) as server: server.url("/a.mp4")``.
"""

from __future__ import annotations

import http.server
import re
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import pytest

# CI (and any background job: `cmd &` in a script) may start pytest with SIGINT ignored, and an
# ignored signal stays ignored in every child process, so the tests that press "Ctrl-C" on a
# real omgclip process would see nothing happen. A Python-level handler here is reset to the
# default in exec'd children: they get Ctrl-C exactly as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"
OMG_MANIFESTS = SHARED / "omg_manifests"


# --------------------------------------------------------------------------- real data
@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mead_clips" / "videos").is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA} (a user's clone has no ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def omg_manifests() -> Path:
    if not OMG_MANIFESTS.is_dir():
        pytest.skip(f"real OMG manifests not found at {OMG_MANIFESTS} (a user's clone has no ../shared)")
    return OMG_MANIFESTS


@pytest.fixture(scope="session")
def fer_faces():
    """``fer_faces(n)``: the first ``n`` real FER2013 faces of ``labels.csv``, resized to 80x80,
    as ``(n, 80, 80)`` uint8 (skips where ../shared has no FER2013)."""
    root = SHARED_DATA / "fer2013"
    if not (root / "labels.csv").is_file():
        pytest.skip(f"FER2013 not found at {root} (a user's clone has no ../shared)")
    import cv2
    import numpy as np
    import pandas as pd

    def load(n: int):
        files = pd.read_csv(root / "labels.csv")["file"][:n]
        return np.stack([cv2.resize(cv2.imread(str(root / f), cv2.IMREAD_GRAYSCALE), (80, 80)) for f in files])

    return load


@pytest.fixture(scope="session")
def mead_video(shared_data) -> Path:
    return shared_data / "mead_clips" / "videos" / "M030_front_happy_level3_001.mp4"


@pytest.fixture(scope="session")
def checkpoint() -> str:
    """The bundled default model (shipped inside the package, so always present)."""
    from omgclip.learn.checkpoint import default_checkpoint

    return str(default_checkpoint())


# --------------------------------------------------------------------------- synthetic video
def _write_video(path: Path, frames, fps: float = 25.0) -> Path:
    """Write BGR (or gray) uint8 ``frames`` as an mp4v video; returns ``path``."""
    import cv2
    import numpy as np

    frames = [np.asarray(f, np.uint8) for f in frames]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else f)
    writer.release()
    return path


@pytest.fixture(scope="session")
def write_video() -> Callable[..., Path]:
    """``write_video(path, frames, fps=25.0) -> path``: frames are (H, W, 3) BGR or (H, W) uint8."""
    return _write_video


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory) -> Path:
    """A tiny generated mp4 (8 frames of 64x48 at 10 fps, brightness 0, 30, ... 210)."""
    import numpy as np

    from omgclip.faces.video_io import count_frames

    path = tmp_path_factory.mktemp("tiny") / "tiny.mp4"
    _write_video(path, [np.full((48, 64, 3), 30 * i, np.uint8) for i in range(8)], fps=10)
    if count_frames(path) != 8:
        pytest.skip("this OpenCV build cannot write/read mp4v video")
    return path


# --------------------------------------------------------------------------- loopback HTTP
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

    def add(self, path: str, body: bytes, content_type: str = "video/mp4",
            truncate: bool = False) -> str:
        """Serve ``body`` at ``path`` (``truncate``: send half, then close); returns its URL."""
        self.routes[path] = Route(body, content_type, truncate)
        return self.url(path)

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
def serve(routes: Mapping[str, bytes | Route] | None = None) -> Iterator[FakeServer]:
    """Run a FakeServer on a free port of 127.0.0.1 for the ``with`` block."""
    state = FakeServer(routes={p: r if isinstance(r, Route) else Route(r) for p, r in (routes or {}).items()})
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


@pytest.fixture(scope="session")
def loopback() -> Callable[..., contextmanager]:
    """``with loopback({"/path": bytes}) as server``: a FakeServer on 127.0.0.1 for the block."""
    return serve
