"""BlazeFace's input and output, as MediaPipe's face detection graph defines them.

* Input: the region to search, letterboxed (aspect ratio kept, black borders)
  into a square tensor of 128 (short range) or 192 (full range) pixels, RGB
  scaled to [-1, 1] (``ImageToTensorCalculator``).
* Output: per SSD anchor, 16 regressors (box centre and size, 6 keypoints) and
  a score logit; decoded against the anchors (``SsdAnchorsCalculator``,
  ``TensorsToDetectionsCalculator``: sigmoid scores clipped at +-100, boxes and
  keypoints relative to the anchor centre, fixed anchor size) and merged by
  *weighted* non-maximum suppression (``NonMaxSuppressionCalculator``,
  algorithm WEIGHTED, IoU 0.3): each kept face is the score-weighted mean of the
  boxes and keypoints that overlap it, with the best score.

The options are those of ``face_detection_short_range.pbtxt`` and
``face_detection_full_range.pbtxt`` in MediaPipe 0.10.21.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facestream.stream.engine.boxes import box_iou

NUM_KEYPOINTS = 6
ROW = 17  # per anchor: 4 box values, 6 keypoints x 2, 1 score logit
NMS_IOU = 0.3


@dataclass(frozen=True)
class BlazeFaceOptions:
    """One model range's tensor size, anchor layout and score threshold (MediaPipe's graph options)."""

    kind: str
    size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    min_score: float  # MediaPipe's own threshold for this range
    # Maps this range's boxes to the full-range model's convention, which the landmark
    # step's box mapping was fitted to: centre shift (x, y) in box widths, then a scale.
    to_full: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def as_full_range(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes (n, 4) in the full-range model's convention (the identity for the full range)."""
        dx, dy, k = self.to_full
        if (dx, dy, k) == (0.0, 0.0, 1.0) or not len(xyxy):
            return xyxy
        w = xyxy[:, 2] - xyxy[:, 0]
        h = xyxy[:, 3] - xyxy[:, 1]
        cx = (xyxy[:, 0] + xyxy[:, 2]) / 2 + dx * w
        cy = (xyxy[:, 1] + xyxy[:, 3]) / 2 + dy * w
        w, h = w * k, h * k
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)

    def anchors(self) -> np.ndarray:
        """(A, 2) anchor centres (x, y), relative to the tensor, in the model's output order."""
        return ssd_anchors(self.size, self.strides, self.interpolated_scale_aspect_ratio)

    @property
    def num_anchors(self) -> int:
        return len(self.anchors())


# The short range's boxes are 6.5% smaller and 3% of a width lower than the full range's for the same face
# (medians over the 79 shared single-person photos, the full range's face cropped at 2 widths for the short one).
SHORT = BlazeFaceOptions("short", 128, (8, 16, 16, 16), 1.0, 0.5, to_full=(-0.008, -0.033, 1 / 0.935))
FULL = BlazeFaceOptions("full", 192, (4,), 0.0, 0.6)
RANGES = {"short": SHORT, "full": FULL}


def ssd_anchors(size: int, strides: tuple[int, ...], interpolated_scale_aspect_ratio: float,
                offset: float = 0.5) -> np.ndarray:
    """Anchor centres as MediaPipe's ``SsdAnchorsCalculator`` lays them out (one aspect ratio, fixed size).

    Layers that share a stride share a feature map; each layer adds one anchor per
    cell, plus one more when ``interpolated_scale_aspect_ratio`` > 0. Order: row,
    column, then anchor, as the model's reshaped outputs are.
    """
    out = []
    layer = 0
    while layer < len(strides):
        per_cell = 0
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 1 + (interpolated_scale_aspect_ratio > 0)
            last += 1
        fm = math.ceil(size / strides[layer])
        ys, xs = np.meshgrid((np.arange(fm) + offset) / fm, (np.arange(fm) + offset) / fm, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(centres, per_cell, axis=0))
        layer = last
    return np.concatenate(out).astype(np.float32)


@dataclass
class Letterbox:
    """Where a view of a frame landed in the model's square tensor: tensor = (frame - origin) * scale."""

    x0: float
    y0: float
    scale: float

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Tensor pixel coordinates (..., 2) back to frame pixels."""
        return points / self.scale + np.array([self.x0, self.y0], np.float32)


def letterbox(image: np.ndarray, box: tuple[float, float, float, float], size: int,
              resample: str = "area") -> tuple[np.ndarray, Letterbox]:
    """The region ``box`` (x0, y0, x1, y1 in pixels, may reach outside) of ``image`` as a (size, size, 3) tensor image.

    The region is centred in the square with its aspect ratio kept; everything
    outside the image is black, as in MediaPipe. ``resample="area"`` averages
    pixels when shrinking (no aliasing: small faces survive); ``"linear"`` is
    MediaPipe's own bilinear warp, used to check the port against MediaPipe.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0)
    ox, oy = (x0 + x1 - side) / 2, (y0 + y1 - side) / 2  # the square around the region
    scale = size / side
    if resample == "linear":
        m = np.array([[scale, 0, -ox * scale], [0, scale, -oy * scale]], np.float32)
        out = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=(0, 0, 0))
        return out, Letterbox(ox, oy, scale)
    h, w = image.shape[:2]
    # the part of the square that lies inside the image, resized once, pasted into a black square
    ix0, iy0 = max(0, int(math.floor(ox))), max(0, int(math.floor(oy)))
    ix1, iy1 = min(w, int(math.ceil(ox + side))), min(h, int(math.ceil(oy + side)))
    out = np.zeros((size, size, 3), np.uint8)
    if ix1 <= ix0 or iy1 <= iy0:
        return out, Letterbox(ox, oy, scale)
    tx0, ty0 = (ix0 - ox) * scale, (iy0 - oy) * scale
    tw = max(1, min(size, int(round((ix1 - ix0) * scale))))
    th = max(1, min(size, int(round((iy1 - iy0) * scale))))
    px, py = min(size - tw, max(0, int(round(tx0)))), min(size - th, max(0, int(round(ty0))))
    crop = image[iy0:iy1, ix0:ix1]
    interp = cv2.INTER_AREA if tw < crop.shape[1] else cv2.INTER_LINEAR
    out[py:py + th, px:px + tw] = cv2.resize(crop, (tw, th), interpolation=interp)
    # the pasted pixels map exactly: recompute the origin and scale from what was pasted
    sx, sy = tw / (ix1 - ix0), th / (iy1 - iy0)
    return out, Letterbox(ix0 - px / sx, iy0 - py / sy, (sx + sy) / 2)


@dataclass
class RawFaces:
    """Decoded detections of one view, in frame pixels."""

    xyxy: np.ndarray  # (n, 4) float32
    score: np.ndarray  # (n,)
    kps: np.ndarray  # (n, 6, 2)

    @classmethod
    def empty(cls) -> RawFaces:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0, NUM_KEYPOINTS, 2), np.float32))

    def __len__(self) -> int:
        return len(self.score)

    def select(self, index: np.ndarray) -> RawFaces:
        return RawFaces(self.xyxy[index], self.score[index], self.kps[index])

    @staticmethod
    def concat(parts: list[RawFaces]) -> RawFaces:
        if not parts:
            return RawFaces.empty()
        return RawFaces(np.concatenate([p.xyxy for p in parts]), np.concatenate([p.score for p in parts]),
                        np.concatenate([p.kps for p in parts]))


def decode(row: np.ndarray, options: BlazeFaceOptions, anchors: np.ndarray, min_score: float,
           transform: Letterbox) -> RawFaces:
    """One image's model output (``anchors * 17`` floats) as faces in frame pixels, before NMS."""
    raw = np.asarray(row, np.float32).reshape(-1, ROW)
    logits = np.clip(raw[:, 16], -100.0, 100.0)
    score = 0.5 * (1.0 + np.tanh(0.5 * logits))  # the sigmoid, without overflow
    keep = np.flatnonzero(score >= min_score)
    if not len(keep):
        return RawFaces.empty()
    r, a, s = raw[keep], anchors[keep], float(options.size)
    centre = r[:, 0:2] / s + a  # reverse_output_order: x, y, w, h; anchors have size 1 (fixed_anchor_size)
    half = r[:, 2:4] / s / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1) * s  # tensor pixels
    kps = (r[:, 4:16].reshape(-1, NUM_KEYPOINTS, 2) / s + a[:, None, :]) * s
    boxes = transform.to_frame(boxes.reshape(-1, 2, 2)).reshape(-1, 4)
    return RawFaces(boxes.astype(np.float32), score[keep].astype(np.float32),
                    transform.to_frame(kps).astype(np.float32))


def weighted_nms(faces: RawFaces, iou: float = NMS_IOU) -> RawFaces:
    """MediaPipe's weighted non-maximum suppression ("blending").

    Best score first: every remaining detection overlapping it by more than
    ``iou`` (itself included) is merged into one face whose box corners and
    keypoints are their score-weighted mean, and which keeps the best score.
    """
    n = len(faces)
    if n <= 1:
        return faces
    order = np.argsort(-faces.score, kind="stable")
    overlaps = box_iou(faces.xyxy[order], faces.xyxy[order]) > iou
    remaining = np.ones(n, bool)
    boxes, scores, kps = [], [], []
    for i in range(n):
        if not remaining[i]:
            continue
        group = order[remaining & overlaps[i]]
        remaining &= ~overlaps[i]
        remaining[i] = False
        w = faces.score[group][:, None]
        total = float(w.sum())
        boxes.append((faces.xyxy[group] * w).sum(axis=0) / total)
        kps.append((faces.kps[group] * w[:, :, None]).sum(axis=0) / total)
        scores.append(faces.score[order[i]])
    return RawFaces(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(kps, np.float32))
