"""Person ids for ``omgclip live``: who is who, decided as the stream goes.

``predict`` groups a video's tracks into persons once the video is done
(:class:`omgclip.faces.identity.PersonTracker`). Live rows are written as they come, so here
each track gets its person id once, at its first label, and keeps it: the id of the nearest
person seen so far (mean dlib face descriptor within ``threshold``) who is not on screen
right now, or a new one. A face that is lost and found again (a new track) thus gets its
old person id back.

Cost: aligning a face is ~1 ms; a descriptor ~50-120 ms, computed once per track and only
from the second track on (a stream with one face never pays for it).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from omgclip.faces.detect import FaceBox


class LivePersons:
    def __init__(self, threshold: float = 0.55, encoder=None):
        from omgclip.faces.identity import FaceEncoder

        self.encoder = encoder or FaceEncoder()
        self.threshold = threshold
        self.ids: dict[int, int] = {}              # track id -> person id
        self.pending: dict[int, np.ndarray] = {}   # track id -> aligned chip, not yet described
        self.persons: list[list[np.ndarray]] = []  # person id -> descriptors
        self.described = 0

    def person_for(self, track_id: int, gray, box: FaceBox, on_screen: Iterable[int]) -> int:
        """The person id of ``track_id`` (decided now if it has none): ``gray`` is the
        working frame, ``box`` the face in it, ``on_screen`` the tracks in this frame."""
        if track_id in self.ids:
            return self.ids[track_id]
        chip = self.encoder.chips(gray, [box])[0]
        if not self.ids:  # the first face: nothing to compare with yet
            self.ids[track_id] = 0
            self.persons.append([])
            self.pending[track_id] = chip
            return 0
        self._describe_pending()
        desc = self._describe(chip)
        busy = {self.ids[t] for t in on_screen if t in self.ids and t != track_id}
        best, best_d = None, self.threshold
        for pid, descs in enumerate(self.persons):
            if pid in busy or not descs:
                continue
            d = float(np.linalg.norm(np.mean(descs, axis=0) - desc))
            if d < best_d:
                best, best_d = pid, d
        if best is None:
            best = len(self.persons)
            self.persons.append([])
        self.persons[best].append(desc)
        self.ids[track_id] = best
        return best

    def _describe(self, chip: np.ndarray) -> np.ndarray:
        self.described += 1
        return self.encoder.describe_chips([chip])[0]

    def _describe_pending(self) -> None:
        for track_id, chip in self.pending.items():
            self.persons[self.ids[track_id]].append(self._describe(chip))
        self.pending.clear()


class SharedEncoder:
    """One :class:`~omgclip.faces.identity.FaceEncoder` for several streams (``serve``'s
    webcam sessions): its models are loaded once, and one call runs at a time."""

    def __init__(self):
        import threading

        from omgclip.faces.identity import FaceEncoder

        self._encoder = FaceEncoder()
        self._lock = threading.Lock()

    def chips(self, gray, boxes):
        with self._lock:
            return self._encoder.chips(gray, boxes)

    def describe_chips(self, chips):
        with self._lock:
            return self._encoder.describe_chips(chips)

    def describe(self, gray, boxes):
        with self._lock:
            return self._encoder.describe(gray, boxes)
