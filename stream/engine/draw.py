"""Drawing faces onto a frame: boxes, names, similarity, track ids, landmarks.

Used by ``facestream detect --out``, live recording and the Gradio demo, so a
face looks the same wherever it is shown. Line widths and fonts scale with the
image so labels stay readable on a 320 px thumbnail and on a 4K frame alike.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from facestream.stream.engine.faces import UNKNOWN, Faces

KNOWN = (40, 200, 70)  # green, RGB
UNKNOWN_COLOR = (255, 120, 0)  # orange, RGB
DETECTED = (0, 170, 255)  # blue: detection only, no recognition ran
LANDMARK = (255, 40, 40)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _label(faces: Faces, i: int) -> tuple[str, tuple[int, int, int]]:
    """Text and colour of face ``i``: name and similarity when recognised, else detector score."""
    parts: list[str] = []
    if faces.name is not None:
        name = faces.name[i] or UNKNOWN
        color = UNKNOWN_COLOR if name == UNKNOWN else KNOWN
        parts.append(name)
        if faces.similarity is not None and not math.isnan(float(faces.similarity[i])):
            parts.append(f"{float(faces.similarity[i]):.2f}")
    else:
        color = DETECTED
        parts.append(f"{float(faces.score[i]):.2f}")
    if faces.track_id is not None and int(faces.track_id[i]) >= 0:
        parts.append(f"#{int(faces.track_id[i])}")
    return " ".join(parts), color


def pixelate(img: np.ndarray, boxes: list) -> None:
    """Pixelate each (x1, y1, x2, y2) box of ``img`` in place: privacy for people nobody enrolled.

    Coarse cells, not a Gaussian blur: a blur of a face can be partly undone, a
    handful of averaged cells cannot.
    """
    for box in boxes:
        _pixelate_box(img, box)


def _pixelate_box(img: np.ndarray, box: np.ndarray) -> None:
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    roi = img[y1:y2, x1:x2]
    cells = max(4, min(12, (x2 - x1) // 8))
    small = cv2.resize(roi, (cells, max(1, cells * (y2 - y1) // (x2 - x1))), interpolation=cv2.INTER_AREA)
    img[y1:y2, x1:x2] = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)


def draw_faces(
    rgb: np.ndarray,
    faces: Faces,
    blur_unknown: bool = False,
    landmarks: bool = True,
) -> np.ndarray:
    """A copy of ``rgb`` with every face drawn.

    Args:
        rgb: (H, W, 3) uint8 RGB frame; left untouched.
        faces: the faces of this frame (names/similarity/track ids are drawn when set).
        blur_unknown: pixelate faces that were recognised as nobody.
        landmarks: draw the 5-point landmarks (or the detector keypoints) as dots.

    Returns:
        The annotated RGB copy. Known faces are green, unknown orange, and faces
        that went through detection only are blue with their detector score.
    """
    out = np.ascontiguousarray(rgb).copy()
    h, w = out.shape[:2]
    base = max(h, w)
    thickness = max(1, round(base / 500))
    font_scale = max(0.4, base / 1600)
    text_thick = max(1, round(font_scale * 1.6))
    pad = max(2, round(3 * font_scale))
    if blur_unknown and faces.name is not None:
        pixelate(out, [faces.xyxy[i] for i in range(len(faces)) if (faces.name[i] or UNKNOWN) == UNKNOWN])
    for i in range(len(faces)):
        text, color = _label(faces, i)
        x1, y1, x2, y2 = (int(round(v)) for v in faces.xyxy[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        points = faces.landmarks if faces.landmarks is not None else faces.kps
        if landmarks and points is not None:
            r = max(1, thickness)
            for px, py in points[i]:
                cv2.circle(out, (int(round(px)), int(round(py))), r, LANDMARK, -1, cv2.LINE_AA)
        (tw, th), baseline = cv2.getTextSize(text, _FONT, font_scale, text_thick)
        # Label above the box, or inside its top when the box touches the image top.
        top = y1 - th - baseline - 2 * pad
        if top < 0:
            top = y1
        left = min(max(0, x1 - thickness // 2), max(0, w - tw - 2 * pad))
        cv2.rectangle(out, (left, top), (left + tw + 2 * pad, top + th + baseline + 2 * pad), color, -1)
        cv2.putText(out, text, (left + pad, top + pad + th), _FONT, font_scale, (255, 255, 255), text_thick,
                    cv2.LINE_AA)
    return out
