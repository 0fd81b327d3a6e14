"""Liveness: is a track a head in the room, or a picture of one (a print, a bent sheet, a phone)?

Evidence comes from MediaPipe's face mesh (:mod:`facestream.stream.engine.face_mesh`)
over the frames of one track:

* **Depth (parallax).** A picture moved in front of the camera moves as a plane:
  the 2D mesh of one frame maps onto the mesh of another by one homography, up
  to the mesh's own jitter. A head that turns or nods does not: its nose, cheeks
  and ears move by different amounts. Per sample, the median homography residual
  (in eye-corner distances) to the sample 5 back, minus the same to the sample 1
  back (the jitter, which both contain), is the depth the track has shown.
* **Motion.** A head that holds still shows no depth either, so depth only
  decides once the face has turned: the affine map between samples 10 apart
  must stretch one way more than the other (foreshortening) by ``MIN_MOTION``.
  Without it the track stays ``unknown`` and says what it lacks.
* **Blinks.** The eye aspect ratio falling below ``BLINK_DROP`` of the track's
  median and recovering: a print cannot blink, and people who stand still do.

One score per track (probability-like, from the depth), with the evidence, in
three states: ``live`` (the depth said "head" on 3 frames in a row, or a blink),
``spoof`` (turned, yet moved like a plane, over at least 25 frame pairs) and
``unknown`` (not enough frames or motion yet). The constants were measured by ``bench/liveness.py``
on real video and on rendered attacks (see the README's Liveness section).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# the shipped operating point (bench/liveness.py): depth (residual excess) at which the score is 0.5, and its scale
DEPTH_AT_HALF = 0.0042
DEPTH_SCALE = 0.0007
MIN_MOTION = 0.02  # foreshortening (90th percentile over the window) that shows a head would have shown depth
STEP = 5  # samples between the frames compared for depth (1/6 s at 30 fps)
MOTION_STEP = 10
WINDOW = 60  # samples the verdict is read over (2 s at 30 fps)
MIN_PAIRS = 10  # depth pairs before a live verdict
SPOOF_PAIRS = 25  # before a spoof verdict: a head's first half-second can look flat (the bench saw one)
LIVE_RUN = 3  # consecutive frames the depth must say "head" (a phone's moire can flicker past it once)
BLINK_DROP = 0.6  # eye aspect ratio below this fraction of the track's median: eyes closing
BLINK_RECOVER = 0.85
MIN_EAR_SAMPLES = 10

STATES = ("unknown", "live", "spoof")

# mesh indices: outer and inner eye corners, upper and lower lid points (two pairs per eye)
_EYES = ((33, 133, (159, 145), (158, 153)), (263, 362, (386, 374), (385, 380)))


def eye_aspect_ratio(points: np.ndarray) -> float:
    """Mean over both eyes of lid opening / eye width (about 0.3 open, under 0.1 closed)."""
    ratios = []
    for outer, inner, (u1, l1), (u2, l2) in _EYES:
        width = float(np.linalg.norm(points[outer, :2] - points[inner, :2]))
        gap = float(np.linalg.norm(points[u1, :2] - points[l1, :2]) + np.linalg.norm(points[u2, :2] - points[l2, :2]))
        ratios.append(gap / (2 * width) if width > 0 else 0.0)
    return float(np.mean(ratios))


def eye_span(points: np.ndarray) -> float:
    """Distance between the outer eye corners, in pixels: the unit residuals are measured in."""
    return float(np.linalg.norm(points[33, :2] - points[263, :2]))


def planar_residual(a: np.ndarray, b: np.ndarray, unit: float) -> float:
    """Median distance between ``b`` and ``a`` mapped by the least-squares homography, in ``unit``."""
    h, _ = cv2.findHomography(a.astype(np.float64), b.astype(np.float64), 0)
    if h is None or unit <= 0:
        return math.nan
    mapped = cv2.perspectiveTransform(a[None].astype(np.float64), h)[0]
    return float(np.median(np.linalg.norm(mapped - b, axis=1)) / unit)


def foreshortening(a: np.ndarray, b: np.ndarray) -> float:
    """How much more the best affine map from ``a`` to ``b`` stretches one way than the other (0: none)."""
    x = np.hstack([a, np.ones((len(a), 1))])
    m, *_ = np.linalg.lstsq(x, b, rcond=None)
    s = np.linalg.svd(m[:2, :2], compute_uv=False)
    return float(s[0] / s[1] - 1.0) if s[1] > 0 else math.nan


@dataclass
class Liveness:
    """A track's verdict: ``state``, ``score`` (0-1, None until enough frames) and the evidence behind it."""

    state: str = "unknown"
    score: float | None = None
    depth: float | None = None
    motion: float | None = None
    blinks: int = 0
    samples: int = 0
    reason: str = "too few frames yet"

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None, n: int) -> float | None:
            return None if v is None or math.isnan(v) else round(float(v), n)

        return {"state": self.state, "score": r(self.score, 3), "depth": r(self.depth, 4),
                "motion": r(self.motion, 3), "blinks": self.blinks, "samples": self.samples, "reason": self.reason}


class TrackLiveness:
    """The evidence one track has gathered: feed it each frame's mesh (:meth:`add`), read :attr:`verdict`."""

    def __init__(self) -> None:
        self._points: deque[np.ndarray] = deque(maxlen=MOTION_STEP + 1)
        self._near: deque[float] = deque(maxlen=WINDOW)   # residual to the previous sample (jitter)
        self._far: deque[float] = deque(maxlen=WINDOW)    # residual to the sample STEP back (jitter + depth)
        self._motion: deque[float] = deque(maxlen=WINDOW)
        self._ear: deque[float] = deque(maxlen=WINDOW)
        self._closed = False
        self._live_run = 0
        self.blinks = 0
        self.samples = 0
        self.reported = False  # a spoof_suspected event was raised for this track
        self.verdict = Liveness()

    def add(self, points: np.ndarray) -> Liveness:
        """One frame's mesh of this track's face ((468, 2+) image pixels); returns the updated verdict."""
        p = np.asarray(points, np.float64)[:, :2]
        unit = eye_span(p)
        if unit <= 0:
            return self.verdict
        self.samples += 1
        if self._points:
            self._near.append(planar_residual(self._points[-1], p, unit))
        if len(self._points) >= STEP:
            self._far.append(planar_residual(self._points[-STEP], p, unit))
        if len(self._points) >= MOTION_STEP:
            self._motion.append(foreshortening(self._points[-MOTION_STEP], p))
        self._points.append(p)
        self._blink(eye_aspect_ratio(p))
        self.verdict = self._judge()
        return self.verdict

    def _blink(self, ear: float) -> None:
        self._ear.append(ear)
        if len(self._ear) < MIN_EAR_SAMPLES:
            return
        typical = float(np.median(self._ear))
        if ear <= BLINK_DROP * typical:
            self._closed = True
        elif self._closed and ear >= BLINK_RECOVER * typical:
            self._closed = False
            self.blinks += 1

    def _judge(self) -> Liveness:
        far = [v for v in self._far if not math.isnan(v)]
        near = [v for v in self._near if not math.isnan(v)]
        motion_v = [v for v in self._motion if not math.isnan(v)]
        motion = float(np.percentile(motion_v, 90)) if motion_v else None
        if len(far) < MIN_PAIRS:
            return Liveness("live" if self.blinks else "unknown", 1.0 if self.blinks else None, None, motion,
                            self.blinks, self.samples, "blinked" if self.blinks else "too few frames yet")
        depth = float(np.median(far) - np.median(near))
        score = 1.0 / (1.0 + math.exp(-(depth - DEPTH_AT_HALF) / DEPTH_SCALE))
        if self.blinks:
            return Liveness("live", max(score, 0.95), depth, motion, self.blinks, self.samples, "blinked")
        self._live_run = self._live_run + 1 if score >= 0.5 else 0
        if self._live_run >= LIVE_RUN:
            return Liveness("live", score, depth, motion, 0, self.samples, "moves in depth like a head")
        if score >= 0.5:
            return Liveness("unknown", score, depth, motion, 0, self.samples, "depth like a head; confirming")
        if motion is not None and motion >= MIN_MOTION and len(far) >= SPOOF_PAIRS:
            return Liveness("spoof", score, depth, motion, 0, self.samples, "turned but stayed flat like a picture")
        if len(far) < SPOOF_PAIRS:
            return Liveness("unknown", score, depth, motion, 0, self.samples, "looks flat so far; gathering frames")
        return Liveness("unknown", score, depth, motion, 0, self.samples,
                        "too little head motion to judge (a slight turn or a blink decides)")
