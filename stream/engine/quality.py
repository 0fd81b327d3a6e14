"""How usable a face is for enrolment: sharpness of its chip and how far the head is turned.

A gallery photo decides every later match of that person, so enrolment refuses
faces that would make a poor reference (see :mod:`facestream.stream.recognition.enroll`).
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
    eye_a, eye_b, nose = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0), pts[4]
    axis = eye_b - eye_a
    span = float(np.hypot(*axis))
    if span < 1e-6:
        return 90.0
    along = float(np.dot(nose - (eye_a + eye_b) / 2, axis / span))  # nose offset along the eye line
    return math.degrees(math.atan2(abs(along) / span, NOSE_DEPTH))
