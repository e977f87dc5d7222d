"""``omgclip serve``'s JSON API on a real uvicorn server on 127.0.0.1: rows like ``predict
--out x.json``, the limits (413, 400, 503), the webcam endpoint, temporary uploads."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from omgclip.labels import EMOTIONS

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install -e '.[web]')")


@contextmanager
def running(**cfg):
    import uvicorn

    from _browser import free_port
    from omgclip.apps.serve import ServeConfig, create_app

    config = ServeConfig(port=free_port(), **cfg)
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}", app.state.service
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def post(url: str, body: bytes, content_type: str, timeout: float = 120) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def upload(url: str, name: str, data: bytes, field: str = "file") -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return post(url, body, f"multipart/form-data; boundary={boundary}")


@pytest.fixture(scope="module")
def server():
    with running(max_upload_mb=0.5, queue_size=1) as s:
        yield s


def test_api_rows_equal_predict_json(server, mead_video, tmp_path):
    from omgclip.apps.predict import PredictConfig, predict

    base, service = server
    status, answer = upload(base + "/api/predict", mead_video.name, mead_video.read_bytes())
    assert status == 200
    out = tmp_path / "x.json"
    predict(PredictConfig(inputs=(str(mead_video),), out=str(out), progress=False))
    expected = json.loads(out.read_text())["rows"]  # predict JSON: {"rows", "people"}
    assert len(answer["rows"]) == len(expected) == 5
    for got, want in zip(answer["rows"], expected):
        assert list(got) == list(want)  # same columns, same order
        assert got["file"] == mead_video.name
        assert {k: v for k, v in got.items() if k != "file"} == {k: v for k, v in want.items() if k != "file"}
    assert not any(service.uploads.iterdir())  # the upload is gone


def test_health_and_page(server):
    base, _ = server
    with urllib.request.urlopen(base + "/healthz") as r:
        health = json.loads(r.read())
    assert health["status"] == "ok" and health["labels"] == list(EMOTIONS)
    with urllib.request.urlopen(base + "/") as r:
        page = r.read().decode()
    assert "<title>omgclip</title>" in page
    # nothing on the page comes from elsewhere: no external scripts, styles, fonts, beacons
    assert not re.search(r"""(src|href|action)\s*=\s*["']?(https?:)?//""", page)
    assert "fetch(\"http" not in page and "fetch('http" not in page


def test_too_large_upload_is_413(server, shared_data):
    base, service = server
    big = shared_data / "unlabeled_faces" / "videos" / "pyfeat_WolfgangLanger_Pexels.mp4"  # 1.6 MB
    status, answer = upload(base + "/api/predict", big.name, big.read_bytes())
    assert status == 413 and "limit is 0.5 MB" in answer["detail"]
    assert not any(service.uploads.iterdir())


@pytest.mark.parametrize("name, data, message", [
    ("notes.mp4", b"this is text, not a video\n" * 20, "not a video or picture omgclip can read"),
    ("empty.mp4", b"", "not a video or picture omgclip can read"),
])
def test_non_video_is_400(server, name, data, message):
    base, service = server
    status, answer = upload(base + "/api/predict", name, data)
    assert status == 400 and message in answer["detail"] and name in answer["detail"]
    assert not any(service.uploads.iterdir())


def test_missing_file_field_is_400(server, mead_video):
    base, _ = server
    status, answer = upload(base + "/api/predict", mead_video.name, mead_video.read_bytes(), field="video")
    assert status == 400 and "multipart field 'file'" in answer["detail"]


def test_full_queue_is_503(server, shared_data):
    """Queue of 1: while one job runs (a 20 s clip: seconds of work) and one waits, the
    others, sent at the same moment, are turned away."""
    base, _ = server
    clip = shared_data / "unlabeled_faces" / "videos" / "styletalk_source_Obama_clip1.mp4"
    data = clip.read_bytes()
    results: list[tuple[int, dict]] = []

    def send():
        results.append(upload(base + "/api/predict", clip.name, data))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    codes = sorted(code for code, _ in results)
    assert set(codes) == {200, 503}, codes  # some ran, the rest were turned away at once
    for code, answer in results:  # the ones that ran: 602 frames, segments 0..30
        if code == 200:
            assert answer["rows"][-1]["segment"] == 30 and answer["rows"][-1]["end_frame"] == 602
    busy = next(a for c, a in results if c == 503)
    assert busy["detail"].startswith("busy")


def test_webcam_frames_get_labels(server, mead_video):
    import cv2

    from omgclip.faces.video_io import iter_bgr_frames

    base, _ = server
    answers = []
    for i, frame in iter_bgr_frames(mead_video):
        ok, jpeg = cv2.imencode(".jpg", frame)
        status, answer = post(base + "/api/live/frame?session=t1", jpeg.tobytes(), "image/jpeg")
        assert status == 200
        answers.append(answer)
        if i == 29:
            break
    assert [a["frame"] for a in answers] == list(range(30))
    assert answers[0]["faces"] and answers[0]["faces"][0]["label"] == ""  # window filling
    labelled = [a for a in answers if a["rows"]]
    assert labelled and labelled[0]["frame"] == 19  # the first full 20-frame window
    assert labelled[0]["rows"][0]["label"] in EMOTIONS
    assert answers[-1]["faces"][0]["label"] in EMOTIONS
    status, answer = post(base + "/api/live/frame?session=t1", b"not a picture", "image/jpeg")
    assert status == 400


def test_page_job_from_a_url(server, mead_video, loopback):
    """The page's URL box: the server downloads the link (yt-dlp, here from 127.0.0.1),
    labels it, and offers the rows and pictures; the download itself is not kept."""
    base, service = server
    with loopback({"/talk.mp4": mead_video.read_bytes()}) as web:
        body = f"url={urllib.request.quote(web.url('/talk.mp4'), safe='')}".encode()
        status, job = post(base + "/api/jobs", body, "application/x-www-form-urlencoded")
        assert status == 200, job
        deadline = time.monotonic() + 120
        while job["state"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.3)
            with urllib.request.urlopen(f"{base}/api/jobs/{job['id']}") as r:
                job = json.loads(r.read())
    assert job["state"] == "done", job
    assert len(job["rows"]) == 5 and job["rows"][0]["file"] == web.url("/talk.mp4")
    assert set(job["files"]) == {"csv", "json", "timeline", "video"}
    with urllib.request.urlopen(base + job["files"]["timeline"]) as r:
        assert r.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not (service.root / "jobs" / job["id"] / "download").exists()


def test_service_removes_its_temp_folder(mead_video):
    with running() as (base, service):
        status, _ = upload(base + "/api/jobs", mead_video.name, mead_video.read_bytes())
        assert status == 200
        root = service.root
        assert root.is_dir()
    deadline = time.monotonic() + 30
    while root.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(root).exists()
