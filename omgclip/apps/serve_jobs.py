"""The work behind ``omgclip serve``: one model, one worker, a bounded queue of jobs, and the
webcam sessions (each a rolling-window :class:`~omgclip.apps.live.LiveLabeler`).

* A job is one uploaded file (or URL) run through ``predict``: rows, and for the page also
  the annotated video and the timeline picture. Jobs wait in a queue of ``queue_size``;
  :class:`Busy` when it is full (the server answers 503).
* Uploads are written into this service's own temporary folder and deleted as soon as
  their job has run (or was refused). Results of the last ``keep_jobs`` jobs stay for the
  page to fetch; everything goes when the service closes.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from omgclip.errors import OmgclipError, one_line

log = logging.getLogger(__name__)

RESULT_FILES = {"csv": "rows.csv", "json": "rows.json", "video": "annotated.mp4",
                "timeline": "timeline.png"}


class Busy(OmgclipError):
    """The queue is full (HTTP 503), or too many webcam sessions are open."""


@dataclass
class Job:
    id: str
    name: str                      #: what the rows' ``file`` column says
    input: Path | None             #: the upload (deleted after the run); None for a URL
    url: str | None
    pictures: bool                 #: also the annotated video and the timeline
    folder: Path
    state: str = "queued"          #: queued, running, done, error
    message: str = ""
    frames_done: int = 0
    frames_total: int = 0
    rows: list | None = None
    files: dict = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    created: float = field(default_factory=time.time)

    def status(self) -> dict:
        total = max(self.frames_total, 1)
        return {"id": self.id, "name": self.name, "state": self.state, "message": self.message,
                "frames_done": self.frames_done, "frames_total": self.frames_total,
                "progress": 1.0 if self.state == "done" else min(1.0, self.frames_done / total),
                "files": {k: f"/api/jobs/{self.id}/{v}" for k, v in self.files.items()}}


class PredictService:
    """One loaded model shared by the job worker and the webcam sessions."""

    def __init__(self, checkpoint: str | None = None, queue_size: int = 4, keep_jobs: int = 8,
                 detect_every: int = 5, max_sessions: int = 4):
        from omgclip.apps.predict import PredictConfig, face_config_for, load_predict_model
        from omgclip.faces.detect import FaceDetector

        self.model = load_predict_model(checkpoint)
        self.cfg = PredictConfig(inputs=("-",), checkpoint=checkpoint, progress=False,
                                 detect_every=detect_every)
        self.face = face_config_for(self.model, self.cfg)
        self.detector = FaceDetector(self.face)
        self.root = Path(tempfile.mkdtemp(prefix="omgclip-serve-"))
        self.uploads = self.root / "uploads"
        self.uploads.mkdir()
        self.jobs: dict[str, Job] = {}
        self.keep_jobs = keep_jobs
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.queue_size = queue_size
        self.lock = threading.Lock()
        self.sessions = LiveSessions(self, max_sessions)
        self._worker = threading.Thread(target=self._work, name="omgclip-serve-worker", daemon=True)
        self._worker.start()

    # -------------------------------------------------------------- jobs
    def new_upload_path(self, filename: str) -> Path:
        suffix = Path(filename or "").suffix.lower()[:10]
        suffix = suffix if suffix[1:].isalnum() else ""
        return self.uploads / f"{uuid.uuid4().hex}{suffix}"

    def submit(self, name: str, upload: Path | None = None, url: str | None = None,
               pictures: bool = True) -> Job:
        job_id = uuid.uuid4().hex[:12]
        job = Job(job_id, name, upload, url, pictures, self.root / "jobs" / job_id)
        with self.lock:
            try:
                self.queue.put_nowait(job)
            except queue.Full:
                if upload is not None:
                    upload.unlink(missing_ok=True)
                raise Busy(f"busy: {self.queue_size} jobs are already waiting; try again in a "
                           f"moment") from None
            self.jobs[job_id] = job
            self._forget_old()
        return job

    def waiting(self) -> int:
        return self.queue.qsize()

    def _forget_old(self) -> None:
        finished = sorted((j for j in self.jobs.values() if j.done.is_set()), key=lambda j: j.created)
        for job in finished[:max(0, len(finished) - self.keep_jobs)]:
            shutil.rmtree(job.folder, ignore_errors=True)
            del self.jobs[job.id]

    def _work(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            job.state = "running"
            try:
                self._run(job)
                job.state = "done"
            except OmgclipError as exc:
                job.state, job.message = "error", one_line(str(exc), fallback="")
            except Exception as exc:  # noqa: BLE001 - the server stays up; the job says why
                log.exception("job %s failed", job.id)
                job.state, job.message = "error", f"internal error: {type(exc).__name__}: {exc}"
            finally:
                if job.input is not None:
                    job.input.unlink(missing_ok=True)
                job.done.set()

    def _run(self, job: Job) -> None:
        from omgclip.apps.inputs import resolve_source
        from omgclip.apps.predict import predict_video
        from omgclip.apps.report import to_frame
        from omgclip.faces.video_io import probe

        job.folder.mkdir(parents=True, exist_ok=True)
        path = job.input
        if job.url:
            path, _ = resolve_source(job.url, str(job.folder / "download"), progress=False)
        job.frames_total = probe(path).frame_count

        def on_frame(index: int) -> None:
            job.frames_done = index + 1

        result = predict_video(path, self.model, self.cfg, face=self.face, name=job.name,
                               detector=self.detector, on_frame=on_frame)
        job.frames_done = job.frames_total = result.frames_decoded
        df = to_frame(result.rows, self.model.labels)
        if job.pictures:
            self._pictures(job, result, df, path)
        job.rows = json.loads(df.to_json(orient="records", double_precision=6))
        shutil.rmtree(job.folder / "download", ignore_errors=True)

    def _pictures(self, job: Job, result, df, path: Path) -> None:
        """The page's job: downloads, the timeline and the annotated video."""
        from omgclip.apps.annotate import plot_timeline
        from omgclip.apps.prediction import annotate_result
        from omgclip.apps.report import write_rows
        from omgclip.dataset.sources import is_image

        write_rows(df, job.folder / "rows.csv")
        write_rows(df, job.folder / "rows.json")
        job.files.update(csv="rows.csv", json="rows.json")
        plot_timeline(df, job.folder / "timeline.png", labels=self.model.labels,
                      title=Path(job.name).name)
        job.files["timeline"] = "timeline.png"
        if not is_image(Path(path)):
            annotate_result(result, df, job.folder / "annotated.mp4")
            job.files["video"] = "annotated.mp4"

    def close(self) -> None:
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class LiveSessions:
    """Webcam sessions of the page: each follows one browser's frames with its own
    rolling-window labeler; idle ones are closed after ``idle_s``."""

    def __init__(self, service: PredictService, max_sessions: int = 4, idle_s: float = 30.0):
        self.service = service
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        self.items: dict[str, tuple] = {}
        self.lock = threading.Lock()
        self.model_lock = threading.Lock()
        self.encoder = None  # the face encoder for person ids, loaded with the first session

    def frame(self, session: str, image, hop: int = 5) -> dict:
        """One webcam frame (BGR) of ``session``: the faces on it and any new label rows."""
        from omgclip.apps.live import LiveLabeler, faces_table
        from omgclip.faces.video_io import to_work_gray, work_scale

        now = time.monotonic()
        with self.lock:
            for key in [k for k, v in self.items.items() if now - v[2] > self.idle_s]:
                del self.items[key]
            if session not in self.items:
                if len(self.items) >= self.max_sessions:
                    raise Busy(f"busy: {self.max_sessions} webcam sessions are open")
                if self.encoder is None:
                    from omgclip.apps.live_people import SharedEncoder

                    self.encoder = SharedEncoder()
                labeler = LiveLabeler(self.service.model, self.service.face, hop=hop,
                                      model_lock=self.model_lock, encoder=self.encoder)
                self.items[session] = (labeler, threading.Lock(), now, now)
            labeler, lock, _, started = self.items[session]
            self.items[session] = (labeler, lock, now, started)
        with lock:
            scale = work_scale(image.shape[1], self.service.face.work_width)
            step = labeler.push(to_work_gray(image, scale), scale, labeler.count, now, time.time(),
                                now - started)
        return {"frame": labeler.count - 1, "faces": faces_table(step.faces), "rows": step.rows,
                "window": labeler.T}
