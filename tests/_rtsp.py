"""An RTSP stream on loopback for tests: ``ffmpeg`` encodes a clip to H.264 and publishes
it as RTP (over UDP to 127.0.0.1); a tiny RTSP server here hands those packets to RTSP
clients, interleaved on their TCP connection (RFC 2326 section 10.12).

ffmpeg alone cannot be an RTSP server that clients connect to (its ``-rtsp_flags listen``
only receives a publisher), and mediamtx is packaged neither for Debian nor on PyPI, so the
session control (OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN) lives here; the video --
real H.264 in real RTP packets -- is all ffmpeg's. Only TCP transport is offered (a client
asking for UDP gets 461 and falls back to TCP, as FFmpeg's client does).
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from _procs import stop


class RtspRelay:
    def __init__(self, sdp: str):
        self.sdp = sdp
        self.clients: list[socket.socket] = []
        self.lock = threading.Lock()
        self.packets = 0
        self.stopped = threading.Event()
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.settimeout(0.2)
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.rtp_port = self.rtp.getsockname()[1]

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def start(self) -> "RtspRelay":
        for target in (self._accept_loop, self._forward_loop):
            threading.Thread(target=target, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            for c in self.clients:
                _close(c)
            self.clients.clear()
        _close(self.server)
        _close(self.rtp)

    def drop_clients(self) -> None:
        """Cut every client's connection (a network drop)."""
        with self.lock:
            for c in self.clients:
                _close(c)
            self.clients.clear()

    # ------------------------------------------------------------------ threads
    def _accept_loop(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _forward_loop(self) -> None:
        while not self.stopped.is_set():
            try:
                packet = self.rtp.recv(65536)
            except (socket.timeout, OSError):
                continue
            self.packets += 1
            frame = b"$\x00" + len(packet).to_bytes(2, "big") + packet
            with self.lock:
                for c in list(self.clients):
                    try:
                        c.sendall(frame)
                    except OSError:
                        self.clients.remove(c)

    def _session(self, conn: socket.socket) -> None:
        buf = b""
        conn.settimeout(0.5)
        while not self.stopped.is_set():
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            while True:
                if buf[:1] == b"$":  # an interleaved RTCP report from the client: skip it
                    if len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[2:4], "big"):
                        break
                    buf = buf[4 + int.from_bytes(buf[2:4], "big"):]
                    continue
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                request, buf = buf[:end].decode("latin-1"), buf[end + 4:]
                if not self._answer(conn, request):
                    return

    def _answer(self, conn: socket.socket, request: str) -> bool:
        method = request.split(" ", 1)[0]
        cseq = re.search(r"(?im)^cseq:\s*(\d+)", request)
        head = f"RTSP/1.0 200 OK\r\nCSeq: {cseq.group(1) if cseq else 0}\r\n"
        extra, body = "", ""
        if method == "OPTIONS":
            extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n"
        elif method == "DESCRIBE":
            body = self.sdp
            extra = (f"Content-Base: {self.url}/\r\nContent-Type: application/sdp\r\n"
                     f"Content-Length: {len(body)}\r\n")
        elif method == "SETUP":
            if "TCP" not in request.upper():
                head = head.replace("200 OK", "461 Unsupported Transport")
            else:
                extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 4242;timeout=60\r\n"
        elif method == "PLAY":
            extra = "Session: 4242\r\nRange: npt=0.000-\r\n"
            conn.sendall((head + extra + "\r\n").encode())
            with self.lock:
                self.clients.append(conn)
            return True
        elif method == "TEARDOWN":
            conn.sendall((head + "Session: 4242\r\n\r\n").encode())
            with self.lock:
                if conn in self.clients:
                    self.clients.remove(conn)
            return False
        conn.sendall((head + extra + "\r\n" + body).encode())
        return True


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _sdp_for_clients(sdp: str) -> str:
    lines = [ln for ln in sdp.strip().splitlines() if not ln.startswith("c=")]
    out = []
    for ln in lines:
        out.append(ln)
        if ln.startswith("m=video"):
            out += ["c=IN IP4 0.0.0.0", "a=control:trackID=0"]
    return "\r\n".join(out) + "\r\n"


@contextmanager
def rtsp_stream(ffmpeg: str, clip: Path, workdir: Path, loops: int = 0) -> Iterator[RtspRelay]:
    """Publish ``clip`` (played ``1 + loops`` times, in real time) as H.264 over RTSP on a
    free loopback port for the ``with`` block; yields the relay (``.url``)."""
    relay = RtspRelay("")
    sdp_file = workdir / "stream.sdp"
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
           "-stream_loop", str(loops), "-i", str(clip), "-an", "-c:v", "libx264",
           "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10", "-pix_fmt", "yuv420p",
           "-f", "rtp", "-sdp_file", str(sdp_file), f"rtp://127.0.0.1:{relay.rtp_port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (sdp_file.exists() and "m=video" in sdp_file.read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ffmpeg did not start publishing: {proc.stderr.read().decode()[-500:]}")
            time.sleep(0.05)
        relay.sdp = _sdp_for_clients(sdp_file.read_text())
        relay.publisher = proc
        yield relay.start()
    finally:
        relay.stop()
        stop(proc, timeout=10)
