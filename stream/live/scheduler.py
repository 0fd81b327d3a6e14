"""Which parts of each live frame are searched for faces: whole frame, swept tiles, crops around tracks.

One model call on a whole 1920x1080 frame sees faces of ~130 px and up; a
camera over a door sees them at 40-150 px. Searching every tile of every frame
would cost ~15 model calls per frame, so a source's frames share the work:

* **tiles** (``detector.tile_size``, overlapping) and the **whole frame** (faces
  too big for a tile: whoever stands close to the camera), swept over successive
  frames: enough per frame that each is searched at least every ``sweep_seconds``
  (the bound on a new face's first box), and a spare share more for the areas
  where the picture changed since their last search (frame differencing on a
  1/8-scale sample), so a face walking in is usually found at once;
* a **crop around every track** (``crop_scale`` face widths, centred where the
  track is predicted to be), every frame, with the short-range model: a face once
  found is followed at its own scale, however small, and its box stays tight.

A face only a tile saw is confirmed in the same frame by a crop around it (see
:class:`LiveDetector`), which keeps the false faces that tiles see in textures out.
A frame whose size changed (a camera switching resolution) resets the grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from facestream.stream.config import DetectorConfig
from facestream.stream.engine.blazeface import RANGES
from facestream.stream.engine.detect import FaceDetector, View, crop_square, tile_views
from facestream.stream.engine.faces import Faces

MOTION_SCALE = 8  # frame differencing on a copy this many times smaller
MOTION_LEVEL = 3.0  # mean absolute grey-level change in a tile that counts as "the picture changed"
# Tiles are searched a third more often than the sweep bound needs: the spare searches go to tiles where the
# picture changed, so a face walking in is usually found within a frame or two, not at the end of a sweep.
SPARE = 1.5
# A tracked face at least this many pixels wide in the model input of an area searched this frame is
# found there reliably (pasted faces: recall 1.00 from 24 px tensor width), so it needs no crop of its own.
AREA_FACE_PX = 32.0


@dataclass(frozen=True)
class Planned:
    """A view and what it is for: ``whole``, ``tile`` or ``crop`` (only tile detections need verifying)."""

    view: View
    purpose: str


class DetectionScheduler:
    """Plans the views of each frame of one source (not thread-safe: each source's worker owns one).

    The *areas* swept are the tiles and the whole frame itself (the whole frame finds the
    faces too big for a tile, people close to the camera). A frame no larger than a tile
    has no tiles: its whole frame is its one area.

    Args:
        cfg: the detector settings (tiling, tile size and overlap, sweep time, crop size, whole-frame range).
    """

    def __init__(self, cfg: DetectorConfig):
        self.cfg = cfg
        self.size: tuple[int, int] | None = None
        self.areas: list[Planned] = []
        self.age = np.zeros(0, np.float64)  # frames since each area was last searched
        self._grey: np.ndarray | None = None
        self._changed = np.zeros(0, np.float64)  # change accumulated in each area since its last search
        self._credit = 0.0  # areas owed: a sweep of 16 areas over 12 frames searches 1.33 a frame on average

    def _reset(self, width: int, height: int) -> None:
        self.size = (width, height)
        b = 0.0 if self.cfg.model == "short" else 0.1 * max(width, height)  # full range wants context around
        whole = Planned(View(self.cfg.model, (-b, -b, width + b, height + b)), "whole")  # close faces
        tiled = self.cfg.tiling == "on" or (self.cfg.tiling == "auto" and max(width, height) > self.cfg.tile_size)
        tiles = tile_views(width, height, self.cfg.tile_size, self.cfg.tile_overlap) if tiled else []
        self.areas = [whole] + [Planned(v, "tile") for v in tiles]
        self.age = np.full(len(self.areas), 1e9)  # never searched: all due
        self._changed = np.zeros(len(self.areas))
        self._grey = None

    def areas_per_frame(self, fps: float) -> float:
        """Areas each frame searches, on average: all within ``sweep_seconds``, plus a spare share for change
        (a small frame's few areas: one every few frames; the crops follow the faces in between)."""
        return min(float(len(self.areas)), SPARE * len(self.areas) / self._period(fps))

    def _period(self, fps: float) -> float:
        """Frames in one sweep: the most frames an area may wait between two searches."""
        return max(1.0, self.cfg.sweep_seconds * (fps if fps > 0 else 30.0))

    def plan(self, frame: np.ndarray, tracks: Sequence[np.ndarray], fps: float) -> list[Planned]:
        """The views of this frame: the areas due (whole frame, tiles), a crop per track (predicted boxes).

        Args:
            frame: the frame (any channel order: only its size and brightness are used).
            tracks: the boxes where the live tracks are expected in this frame.
            fps: the source's frame rate (how many frames a sweep may take): the camera's, or a video
                file's own rate (a file read faster than real time still sweeps in video time).
        """
        h, w = frame.shape[:2]
        if self.size != (w, h):
            self._reset(w, h)
        self._motion(frame, tracks)
        self._credit += self.areas_per_frame(fps)
        k = int(self._credit)
        self._credit -= k
        views = [self.areas[i] for i in self._due(k, self._period(fps))]
        views += [Planned(View("short", crop_square(box, self.cfg.crop_scale)), "crop") for box in tracks
                  if not any(_sees(area.view, box) for area in views)]
        return views

    def _due(self, k: int, period: float) -> list[int]:
        """The ``k`` areas to search now: those a full sweep has not reached, oldest first; then those
        where the picture changed most; then the oldest."""
        self.age += 1
        if k <= 0:
            return []
        overdue = self.age >= period
        changed = self._changed >= MOTION_LEVEL
        # lexicographic: overdue first (by age), then changed (by change), then by age
        priority = overdue * 1e12 + changed * (1e6 + self._changed) + self.age
        chosen = [int(i) for i in np.argsort(-priority, kind="stable")[:k]]
        self.age[chosen] = 0
        self._changed[chosen] = 0
        return chosen

    def _motion(self, frame: np.ndarray, tracks: Sequence[np.ndarray]) -> None:
        """Add each area's mean grey-level change since the last frame to its account.

        Change around the tracks is left out: their crops follow them already, and a
        big face walking by must not keep its tiles busy while a small one waits elsewhere.
        """
        small = np.ascontiguousarray(frame[::MOTION_SCALE, ::MOTION_SCALE])  # a sample is enough per tile
        grey = (cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small).astype(np.int16)
        if self._grey is not None and self._grey.shape == grey.shape:
            diff = np.abs(grey - self._grey).astype(np.float32)
            for box in tracks:
                x0, y0, x1, y1 = (int(v) // MOTION_SCALE for v in crop_square(box, self.cfg.crop_scale))
                diff[max(0, y0):max(0, y1 + 1), max(0, x0):max(0, x1 + 1)] = 0
            for i, area in enumerate(self.areas):
                x0, y0, x1, y1 = (max(0, int(v) // MOTION_SCALE) for v in area.view.box)
                region = diff[y0:max(y0 + 1, y1), x0:max(x0 + 1, x1)]
                self._changed[i] += float(region.mean()) if region.size else 0.0
        self._grey = grey


def _sees(view: View, box: np.ndarray) -> bool:
    """Whether ``view`` holds the face ``box`` whole, at least ``AREA_FACE_PX`` wide in the model's input."""
    x0, y0, x1, y1 = view.box
    bx0, by0, bx1, by1 = (float(v) for v in box)
    inside = bx0 >= x0 and by0 >= y0 and bx1 <= x1 and by1 <= y1
    return inside and (bx1 - bx0) * RANGES[view.kind].size / max(x1 - x0, y1 - y0) >= AREA_FACE_PX


class LiveDetector:
    """Finds the faces of one source's frames: its scheduler's views, run through the (shared) detector.

    A face counts when the whole frame or a crop around a track sees it. A face only
    a tile saw is a candidate: a crop around it (short range) looks again, in the same
    frame, and it counts when that look finds it with ``confirm_score``; tiles see faces
    in textures that no closer look confirms.

    Args:
        detector: the detector every source shares (its model calls batched across sources).
        cfg: the detector settings.
    """

    def __init__(self, detector: FaceDetector, cfg: DetectorConfig):
        self.detector = detector
        self.cfg = cfg
        self.scheduler = DetectionScheduler(cfg)

    def plan(self, frame: np.ndarray, expected: Sequence[np.ndarray], fps: float) -> list[Planned]:
        """This frame's views (see :meth:`DetectionScheduler.plan`); cheap, and the only part that reads the
        tracks, so the search itself can run while the previous frame is still being processed."""
        return self.scheduler.plan(frame, expected, fps)

    def search(self, rgb: np.ndarray, planned: Sequence[Planned]) -> Faces:
        """The faces of a frame (RGB) in its planned views; thread-safe (the detector batches the calls)."""
        merged = self.detector.search(rgb, [p.view for p in planned], [p.purpose != "tile" for p in planned],
                                      self.cfg.crop_scale)
        h, w = rgb.shape[:2]
        return FaceDetector.to_faces(merged, w, h)

    def detect(self, frame: np.ndarray, rgb: np.ndarray, expected: Sequence[np.ndarray], fps: float) -> Faces:
        """This frame's faces (:meth:`plan`, then :meth:`search`).

        Args:
            frame: the frame as read (BGR), for motion; rgb: the same frame in RGB, for the model.
            expected: where each live track should be in this frame (crops are cut around them).
            fps: the source's frame rate.
        """
        return self.search(rgb, self.plan(frame, expected, fps))
