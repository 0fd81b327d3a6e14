"""1:1 with liveness: is the person in this short clip (or these consecutive frames) enrolled person X,
and are they a head in front of the camera rather than a photo held up to it?

The clip's main face (the largest at first, then followed by overlap from frame to frame) feeds the same
face-mesh evidence as a live track (:class:`facestream.stream.engine.liveness.TrackLiveness`):
a turning head shows depth, a turning picture stays flat, a blink counts. The
identity is checked like a live track's: a template of the clip's best distinct
views (up to ``VIEWS``, picked as enrolment from video picks them), at the 1:1
threshold read for a template of that many views. 1-3 s of video at 15-30 fps
with a slight turn of the head or a blink is what a verdict needs.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from facestream.errors import FacestreamError
from facestream.gallery.matcher import Matcher
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.detect import box_iou
from facestream.stream.engine.face_mesh import PRESENT, shared_mesher
from facestream.stream.engine.faces import Faces
from facestream.stream.engine.imageio import check_pixels
from facestream.stream.engine.liveness import Liveness, TrackLiveness
from facestream.stream.engine.quality import face_quality
from facestream.stream.recognition.identify import Verification
from facestream.stream.recognition.video_enroll import VIEWS, VideoView, pick_views

MAX_CLIP_FRAMES = 120  # 4 s at 30 fps: enough for a verdict, bounded work per request
SAME_FACE_IOU = 0.2  # the main face of consecutive frames overlaps this much...
MAX_MISSED = 5  # ...or is missing for at most this many frames; else a new main face starts over


@dataclass
class ClipVerification:
    """A 1:1 answer on a clip: the match on its best frame and the liveness of its main face."""

    match: Verification
    liveness: Liveness
    frames: int
    views: list[int]  # the frames whose faces made the template
    required: bool

    @property
    def verified(self) -> bool:
        """Same person, and (when liveness is required) judged live."""
        return self.match.same and (not self.required or self.liveness.state == "live")

    def to_json(self) -> dict[str, Any]:
        return {**self.match.to_json(), "liveness": self.liveness.to_json(), "liveness_required": self.required,
                "verified": self.verified, "frames": self.frames, "views": self.views}


def read_clip(data: bytes, name: str = "the clip") -> list[np.ndarray]:
    """The first ``MAX_CLIP_FRAMES`` frames (RGB) of an uploaded video.

    Raises:
        FacestreamError: not a video FFmpeg can decode, frames over the pixel limit, or no frames.
    """
    fd, path = tempfile.mkstemp(suffix=".video")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        cap = cv2.VideoCapture(path)
        frames: list[np.ndarray] = []
        try:
            if cap.isOpened():
                check_pixels(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), name)
            while cap.isOpened() and len(frames) < MAX_CLIP_FRAMES:
                ok, bgr = cap.read()
                if not ok:
                    break
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        finally:
            cap.release()
    finally:
        os.unlink(path)
    if not frames:
        raise FacestreamError(f"{name} has no frames that can be decoded.",
                              "Send a short MP4/WebM video (1-4 s) of the face, or several consecutive frames.")
    return frames


@dataclass
class _Shot:
    frame: int
    quality: float
    faces: Faces  # the main face (one row)
    found: int  # faces in that frame


def clip_liveness(analyzer: FaceAnalyzer, frames: list[np.ndarray]) -> tuple[Liveness, list[_Shot]]:
    """The liveness of the clip's main face, and that face on every frame it was found in.

    Raises:
        FacestreamError: no face in any frame.
    """
    mesher = shared_mesher()
    evidence = TrackLiveness()
    shots: list[_Shot] = []
    last_box, missed = None, 0
    for i, rgb in enumerate(frames):
        faces = analyzer.detect(rgb, with_landmarks=False)
        if not len(faces):
            continue
        kps = faces.kps
        if last_box is not None and float(box_iou(faces.xyxy, last_box)[:, 0].max()) >= SAME_FACE_IOU:
            k = int(np.argmax(box_iou(faces.xyxy, last_box)[:, 0]))  # the face that continues the main one
            mesh = mesher(rgb, faces.xyxy[k:k + 1], None if kps is None else kps[k:k + 1])
            points, present = mesh.points[0], mesh.presence[0] >= PRESENT
        elif last_box is not None and missed < MAX_MISSED:
            missed += 1  # the main face was not found on this frame: wait a little for it
            continue
        else:
            # a new main face: the largest one the mesh sees (a profile or a blurred face gives no evidence)
            mesh = mesher(rgb, faces.xyxy, kps)
            seen = np.flatnonzero(mesh.presence >= PRESENT)
            if not len(seen):
                continue
            k = int(seen[np.argmax((faces.width * faces.height)[seen])])
            points, present = mesh.points[k], True
            evidence, shots = TrackLiveness(), []  # evidence and views start over with it
        last_box, missed = faces.xyxy[k:k + 1], 0
        shots.append(_Shot(i, float(face_quality(rgb, faces[[k]])[0]), faces[[k]], len(faces)))
        if present:
            evidence.add(points)
    if not shots:
        raise FacestreamError("No face found in any frame of the clip.",
                              "Film the face from the front, at least ~60 px wide, for 1-4 s.")
    return evidence.verdict, shots


def _template(analyzer: FaceAnalyzer, frames: list[np.ndarray], shots: list[_Shot]) -> tuple[np.ndarray, list[int]]:
    """The quality-weighted mean of up to VIEWS good, different views (enrolment from video's pick), and their
    frames; the candidates are embedded in one batch."""
    candidates = sorted(shots, key=lambda s: -s.quality)[:3 * VIEWS]
    chips = np.stack([analyzer.chips(frames[s.frame], s.faces)[0] for s in candidates])
    embeddings = analyzer.embed_chips(chips)
    views = [VideoView(s.frame, chip, s.faces.landmarks[0] if s.faces.landmarks is not None else np.zeros((5, 2)),
                       float(s.faces.width[0]), s.quality, e)
             for s, chip, e in zip(candidates, chips, embeddings, strict=True)]
    picked = pick_views(views, VIEWS)
    mean = np.sum([max(v.quality, 0.05) * v.embedding for v in picked], axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32), sorted(v.frame for v in picked)


def verify_clip(analyzer: FaceAnalyzer, matcher: Matcher, frames: list[np.ndarray], person: str,
                require_live: bool) -> ClipVerification:
    """Is the clip's main face ``person`` (a template of its best views), and is it live?

    Raises:
        FacestreamError: unknown person, no face in the clip.
    """
    matcher.store.get_person(person)  # an unknown person fails before any model work
    verdict, shots = clip_liveness(analyzer, frames)
    template, views = _template(analyzer, frames, shots)
    match, same, threshold = matcher.similarity_to(template, person, views=len(views))
    best = next(s for s in shots if s.frame == views[0])
    box = [round(float(v), 1) for v in best.faces.xyxy[0]]
    return ClipVerification(Verification(match.person_id, match.name, match.similarity, threshold, same, box,
                                         best.found), verdict, len(frames), views, require_live)
