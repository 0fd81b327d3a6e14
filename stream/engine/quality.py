"""How usable a face is: sharpness, how far the head is turned, and one quality score per face.

A gallery photo decides every later match of that person, so enrolment refuses
faces that would make a poor reference (see :mod:`facestream.stream.recognition.enroll`);
live tracks weight their views by :func:`face_quality` and skip the poorest frames
(``tracking.min_quality``). Both use the same yaw measure.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# dlib's 5 points seen from a frontal camera: the nose point (bottom of the nose) stands in front of
# the eye centres by about 0.29 of the distance between them (anthropometric averages: subnasale
# ~1.8 cm in front of the eyes, eyes ~6.3 cm apart). Turning the head by `yaw` moves the nose point
# sideways by that depth * sin(yaw) while the eyes' distance shrinks by cos(yaw).
NOSE_DEPTH = 0.29


def sharpness(chip: np.ndarray) -> float:
    """Variance of the Laplacian of the grey chip: low means blurred."""
    grey = cv2.cvtColor(np.ascontiguousarray(chip), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def head_yaw(landmarks: np.ndarray) -> float:
    """How far the head is turned left or right, in degrees (0 = facing the camera), from dlib's 5 points.

    Point order is dlib's: 0-1 outer and inner corner of one eye, 2-3 of the other,
    4 the bottom of the nose. The picture is first rotated so the eyes are level.
    A coarse estimate (about +-10 degrees on a real face): enough to tell a face
    looking at the camera from a half profile.
    """
    pts = np.asarray(landmarks, np.float64).reshape(5, 2)
    return yaw_from_points(pts[0:2].mean(axis=0), pts[2:4].mean(axis=0), pts[4], NOSE_DEPTH)


# BlazeFace's keypoints: 0-1 the eye centres, 2 the nose tip. The tip stands further in front of the eyes
# than dlib's nose point (pronasale ~3 cm against ~1.8 cm, eyes ~6.3 cm apart).
NOSE_TIP_DEPTH = 0.45
# Two embedded views of one face this alike are one view (consecutive frames of a still face: 0.98-1.0; two
# photos of one person on LFW: median 0.953, 95th percentile 0.976). Counting a correlated view as a new one
# only raises the bar a stranger's template must clear (the tail is read for more independent views).
DUPLICATE_VIEW = 0.975

# The face quality's factors (see quality_score).
FULL_SIDE = 64.0  # px: faces of 64 px are already recognised about as well as bigger ones
MIN_SIDE = 12.0
# Laplacian variance of the face resized to 96x96 grey (sharp faces: 100-450; blur sigma 6 px on a 335 px face: 24)
FULL_SHARPNESS = 60.0
MIN_POSE = 0.2  # a profile still carries something: the pose factor never falls below this
MIN_SCORE, FULL_SCORE = 0.3, 0.8  # detector confidence: the factor rises from 0.5 to 1 between them
QUALITY_SIDE = 96  # px: faces are resized to this before their sharpness is measured (size-independent)


def yaw_from_points(eye_a: np.ndarray, eye_b: np.ndarray, nose: np.ndarray, depth: float) -> float:
    """Head turn in degrees from two eye centres and a nose point standing ``depth`` (in eye spans) in front."""
    axis = np.asarray(eye_b, np.float64) - np.asarray(eye_a, np.float64)
    span = float(np.hypot(*axis))
    if span < 1e-6:
        return 90.0
    mid = (np.asarray(eye_a, np.float64) + np.asarray(eye_b, np.float64)) / 2
    along = float(np.dot(np.asarray(nose, np.float64) - mid, axis / span))
    return math.degrees(math.atan2(abs(along) / span, depth))


def detector_yaw(kps: np.ndarray) -> float:
    """Head turn in degrees from BlazeFace's keypoints (eyes and nose tip)."""
    pts = np.asarray(kps, np.float64).reshape(-1, 2)
    return yaw_from_points(pts[0], pts[1], pts[2], NOSE_TIP_DEPTH)


def face_sharpness(rgb: np.ndarray, box: np.ndarray) -> float:
    """Sharpness of the face inside ``box``, measured at a fixed size so small and big faces compare."""
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    crop = cv2.resize(np.ascontiguousarray(rgb[y1:y2, x1:x2]), (QUALITY_SIDE, QUALITY_SIDE),
                      interpolation=cv2.INTER_AREA)
    return sharpness(crop)


def _ramp(x: float, lo: float, hi: float) -> float:
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))


def quality_score(side: float, sharp: float, yaw: float, score: float) -> float:
    """How usable one face is for recognition, 0-1: the product of a size, a sharpness, a pose (cosine of
    the head turn, at least ``MIN_POSE``) and a detector-confidence factor. A blank or blurred patch scores
    near 0 whatever else; a big sharp profile keeps ~0.2, a frontal one 1."""
    size = max(0.05, _ramp(side, MIN_SIDE, FULL_SIDE))
    pose = max(MIN_POSE, math.cos(math.radians(min(90.0, yaw))))
    conf = 0.5 + 0.5 * _ramp(score, MIN_SCORE, FULL_SCORE)
    return float(size * _ramp(sharp, 0.0, FULL_SHARPNESS) * pose * conf)


def face_quality(rgb: np.ndarray, faces) -> np.ndarray:  # faces: facestream.stream.engine.faces.Faces
    """(n,) float32 quality of every face of a frame: yaw from dlib's 5 points where computed, else from the
    detector's keypoints (0 when neither exists)."""
    out = np.zeros(len(faces), np.float32)
    sides = np.minimum(faces.width, faces.height)
    for i in range(len(faces)):
        if faces.landmarks is not None:
            yaw = head_yaw(faces.landmarks[i])
        elif faces.kps is not None and faces.kps.shape[1] >= 3:
            yaw = detector_yaw(faces.kps[i])
        else:
            yaw = 0.0
        out[i] = quality_score(float(sides[i]), face_sharpness(rgb, faces.xyxy[i]), yaw, float(faces.score[i]))
    return out
