"""Enrolment from a video: several sharp, different views of one person instead of one photo.

A person enrolled from several views is scored by their mean embedding, which is
closer to every later view of them than any one photo is; the open-set decision
already raises the bar for strangers by the photo count (``photo_shift``), so
more views name the person more often at the same promise on strangers
(``bench/templates.py``: the same effect measured on the query side).

``VIEWS`` = 5: on LFW the gain of each extra view shrinks as ``1 - 1/k`` while
the stranger bar rises the same way; 5 views hold 80% of what infinitely many
would give. Views are picked greedily: the sharpest, most frontal face first,
then the face that is best *and* least like the ones already picked (pose and
expression spread), never a near-duplicate (``DUPLICATE_VIEW``), and only faces
that look like the clip's main person (a passer-by in the background is not
them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.quality import DUPLICATE_VIEW, face_quality

log = logging.getLogger(__name__)

VIDEO_EXTS = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"})
VIEWS = 5
SAMPLES_PER_SECOND = 5.0  # frames looked at per second of video (neighbouring frames are near-duplicates)
MAX_SAMPLES = 300  # a minute of video at most: enough views of anyone who stood in front of the camera


@dataclass
class VideoView:
    """The main face of one sampled frame."""

    frame: int
    chip: np.ndarray
    landmarks: np.ndarray | None  # dlib's 5 points (the head-turn check); None where unknown
    width: float
    quality: float
    embedding: np.ndarray


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def collect_views(analyzer: FaceAnalyzer, path: str | Path) -> list[VideoView]:
    """The largest face of frames sampled through the video, embedded.

    Raises:
        FacestreamError: the file cannot be decoded.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FacestreamError(f"Cannot read the video {path}.", "Check that it is a video FFmpeg can decode.")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    every = max(1, int(round(fps / SAMPLES_PER_SECOND)))
    views: list[VideoView] = []
    index = -1
    try:
        while len(views) < MAX_SAMPLES:
            ok, bgr = cap.read()
            if not ok:
                break
            index += 1
            if index % every:
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            faces = analyzer.detect(rgb)
            if not len(faces):
                continue
            face = faces[[int(np.argmax(faces.width * faces.height))]]
            chip = analyzer.chips(rgb, face)[0]
            assert face.landmarks is not None  # detect() adds them
            views.append(VideoView(index, chip, face.landmarks[0], float(face.width[0]),
                                   float(face_quality(rgb, face)[0]), np.zeros(0, np.float32)))
    finally:
        cap.release()
    if index < 0:
        raise FacestreamError(f"The video {path} has no readable frame.", "Check the file.")
    if views:
        embeddings = analyzer.embed_chips(np.stack([v.chip for v in views]))
        for v, e in zip(views, embeddings, strict=True):
            v.embedding = e
    return views


def main_person(views: list[VideoView], threshold: float) -> list[VideoView]:
    """The views of the person seen most: those alike (``threshold``) to the view alike to most others."""
    if len(views) <= 1:
        return views
    emb = np.stack([v.embedding for v in views])
    alike = (emb @ emb.T) >= threshold
    centre = int(np.argmax(alike.sum(axis=1)))
    return [v for v, same in zip(views, alike[centre], strict=True) if same]


def pick_views(views: list[VideoView], count: int = VIEWS) -> list[VideoView]:
    """Up to ``count`` good, different views: greedy on quality times distance to those already picked."""
    left = sorted(views, key=lambda v: -v.quality)
    if not left:
        return []
    picked = [left.pop(0)]
    while left and len(picked) < count:
        chosen = np.stack([v.embedding for v in picked])
        best, best_score = None, -1.0
        for v in left:
            nearest = float((chosen @ v.embedding).max())
            if nearest >= DUPLICATE_VIEW:
                continue
            score = v.quality * (1.0 - nearest)
            if score > best_score:
                best, best_score = v, score
        if best is None:
            break
        picked.append(best)
        left.remove(best)
    return sorted(picked, key=lambda v: v.frame)
