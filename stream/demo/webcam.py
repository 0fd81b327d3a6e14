"""One browser's webcam stream: its own tracker over the shared face engine and gallery.

Each browser session gets a :class:`WebcamSession` (kept in ``gr.State``), so two
visitors never share tracks. The frame step is the live runtime's own
(:class:`facestream.stream.live.recognizer.Recognizer`): track, judge quality,
embed only the tracks that need it, match each track's template with the gallery's
open-set decision, split a track whose face stopped looking like itself, vote; so
the demo names people exactly as ``facestream run`` does on a file (a browser waits
for each answer, as a file does).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from facestream.gallery.matcher import Matcher
from facestream.stream.config import Config
from facestream.stream.demo.text import md
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.draw import draw_faces
from facestream.stream.engine.faces import UNKNOWN, Faces
from facestream.stream.live.recognizer import Recognizer, TrackEvent

log = logging.getLogger(__name__)


class WebcamSession:
    """Tracks and identities of one webcam stream, plus its frame rate for the status line.

    Args:
        config: tracking and matching settings.
        analyzer, matcher: the face engine and gallery index every browser shares (both thread-safe).
    """

    def __init__(self, config: Config, analyzer: FaceAnalyzer, matcher: Matcher):
        self.config = config
        self.analyzer = analyzer
        self.matcher = matcher
        self.recognizer = Recognizer("webcam", config, analyzer, matcher)
        self.events: list[TrackEvent] = []  # the last frame's
        self.frame = 0
        self.last_faces: Faces = Faces.empty()
        self.fps = 0.0
        self._last: float | None = None
        self._lock = threading.Lock()  # frames of one session are processed one at a time, in order

    def step(self, rgb: np.ndarray, timestamp: float | None = None) -> Faces:
        """Detect, track, embed where needed and vote: the faces of this frame with their track's name."""
        analyzer = self.analyzer
        timestamp = time.time() if timestamp is None else timestamp
        with self._lock:
            self.frame += 1
            faces = analyzer.detect(rgb, with_landmarks=False)
            step = self.recognizer.step(self.frame, timestamp, rgb, faces, wait=True)
            self.events = step.events
            self._tick()
            return step.faces

    def process(self, rgb: np.ndarray) -> tuple[np.ndarray, str]:
        """One webcam frame in, the annotated frame and a one-line status out."""
        faces = self.last_faces = self.step(rgb)
        return draw_faces(rgb, faces, landmarks=False), self.summary(faces)

    def _tick(self) -> None:
        now = time.monotonic()
        if self._last is not None:
            dt = max(now - self._last, 1e-6)
            self.fps = 1.0 / dt if self.fps == 0 else 0.8 * self.fps + 0.2 / dt
        self._last = now

    def summary(self, faces: Faces) -> str:
        names = sorted({n for n in faces.name or [] if n != UNKNOWN})
        unknown = sum(n == UNKNOWN for n in faces.name or [])
        state = dict(zip(faces.name or [], faces.liveness_state or [], strict=False))
        mark = {"live": " (live)", "spoof": " (a photo?)"}
        who = ", ".join(f"**{md(n)}**{mark.get(state.get(n, ''), '')}" for n in names) or "nobody known"
        extra = f" + {unknown} unknown" if unknown else ""
        return f"{len(faces)} face(s): {who}{extra} · {self.fps:.1f} frames/s · frame {self.frame}"
