"""Face detection with MediaPipe BlazeFace, with downscaling and optional tiling.

BlazeFace looks at a 128x128 (short range) or 192x192 (full range) copy of its
input, so a 40 px face in a 1920x1080 frame shrinks to 4 px and vanishes. Tiling
runs the model on overlapping crops (plus the whole frame, for big faces) and
merges the boxes, which finds small faces at the cost of one model call per tile.

The models ship in the ``mediapipe==0.10.21`` wheel. The legacy
``mp.solutions.face_detection`` graph is used because the Tasks API's
``FaceDetector`` rejects the shipped full-range (sparse) model: its box tensor
has a different anchor count than the Tasks graph expects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.config import DetectorConfig
from facestream.stream.engine.faces import Faces

log = logging.getLogger(__name__)

# A box whose side lies within this fraction of the tile side of an inner tile edge
# was probably cut by the tile, and a neighbour tile (or the whole frame) may see it whole.
_EDGE_MARGIN = 0.01
# A cut box is dropped when this much of its area lies inside a box that was not cut.
_CUT_COVERED = 0.5
# The whole-frame pass sees the frame inside a black border of this fraction of its
# long side: full-range BlazeFace misses faces that fill or touch the frame (close-ups,
# selfies) and finds them once they have some context around them. Measured on the
# shared photos: without a border one close-up portrait is missed; 0.1-0.2 finds every
# single-person photo once and every group photo's people; 0.15 is the middle. The
# short-range model, made for close faces, loses them with that much border: 0.03 there
# (no border: one false face on a single-person photo; 0.03: none).
_FRAME_BORDER = {"full": 0.15, "short": 0.03}


@dataclass
class _Raw:
    """Detections of one model call in the coordinates of the working frame."""

    xyxy: np.ndarray  # (n, 4) float32
    score: np.ndarray  # (n,)
    kps: np.ndarray  # (n, 6, 2)
    cut: np.ndarray  # (n,) bool: touches an inner tile edge


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two sets of xyxy boxes, (len(a), len(b))."""
    inter = _intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def nms(xyxy: np.ndarray, score: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first.

    The IoU matrix is computed once (vectorised); the greedy pass only walks it,
    which is cheap for the tens of boxes one frame has.
    """
    if len(xyxy) == 0:
        return np.zeros((0,), np.int64)
    order = np.argsort(-score, kind="stable")
    overlaps = box_iou(xyxy[order], xyxy[order]) > iou
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        suppressed |= overlaps[i]
    return np.asarray(keep, np.int64)


def tile_grid(width: int, height: int, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Overlapping tiles (x0, y0, x1, y1) covering the frame; the last row/column is flush with the edge."""

    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        stride = max(1, int(tile * (1.0 - overlap)))
        out = list(range(0, length - tile, stride))
        out.append(length - tile)
        return sorted(set(out))

    return [
        (x, y, min(x + tile, width), min(y + tile, height))
        for y in starts(height)
        for x in starts(width)
    ]


@contextlib.contextmanager
def _native_stderr_silenced():
    """Mute file descriptor 2 while MediaPipe's C++ core starts.

    TFLite and absl print INFO/WARNING lines straight to fd 2 when a graph is
    built and first run ("Created TensorFlow Lite XNNPACK delegate", "All log
    messages before absl::InitializeLog()..."); no environment variable turns
    them off, and a user of the CLI should see only our messages. Failures
    still surface: MediaPipe raises Python exceptions for them.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FaceDetector:
    """Finds faces in RGB images; safe to share between threads (calls are serialised).

    Args:
        cfg: detector settings (model range, score threshold, tiling, downscaling).
    """

    def __init__(self, cfg: DetectorConfig | None = None):
        self.cfg = cfg or DetectorConfig()
        self._lock = threading.Lock()
        import mediapipe as mp  # heavy import, only when a detector is built

        with _native_stderr_silenced():
            self._graph = mp.solutions.face_detection.FaceDetection(
                model_selection=0 if self.cfg.model == "short" else 1,
                min_detection_confidence=float(self.cfg.min_score),
            )
            # The first inference is where TFLite announces its delegate; do it now, quietly.
            self._graph.process(np.zeros((64, 64, 3), np.uint8))
        log.info(
            "MediaPipe BlazeFace %s-range detector ready (min_score=%.2f, tiling=%s)",
            self.cfg.model, self.cfg.min_score, self.cfg.tiling,
        )

    def close(self) -> None:
        """Release the MediaPipe graph."""
        with self._lock:
            if self._graph is not None:
                self._graph.close()
                self._graph = None

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def uses_tiles(self, width: int, height: int) -> bool:
        """Whether a (downscaled) frame of this size is searched in tiles."""
        if self.cfg.tiling == "on":
            return True
        return self.cfg.tiling == "auto" and max(width, height) > self.cfg.tile_size

    def detect(self, rgb: np.ndarray) -> Faces:
        """Every face in an (H, W, 3) uint8 RGB image, in that image's pixel coordinates.

        Boxes are clipped to the image; boxes that are degenerate after clipping
        are dropped. ``kps`` holds MediaPipe's 6 keypoints (eyes, nose tip, mouth,
        ear tragions) in pixels.

        Raises:
            FacestreamError: the image is smaller than 2x2 pixels.
        """
        rgb = _as_rgb(rgb)
        h, w = rgb.shape[:2]
        work, scale = self._downscale(rgb)
        wh, ww = work.shape[:2]
        with self._lock:
            if self._graph is None:
                raise RuntimeError("FaceDetector was closed")
            border = round(_FRAME_BORDER[self.cfg.model] * max(ww, wh))
            parts = [self._run(work, (0, 0, ww, wh), (ww, wh), border=border)]
            if self.uses_tiles(ww, wh):
                for box in tile_grid(ww, wh, self.cfg.tile_size, self.cfg.tile_overlap):
                    if box != (0, 0, ww, wh):
                        parts.append(self._run(work, box, (ww, wh)))
        xyxy, score, kps = self._merge(parts)
        xyxy *= np.tile(scale, 2)
        kps *= scale
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h)
        ok = ((xyxy[:, 2] - xyxy[:, 0]) >= 2) & ((xyxy[:, 3] - xyxy[:, 1]) >= 2)
        order = np.argsort(-score[ok], kind="stable")
        return Faces(xyxy=xyxy[ok][order], score=score[ok][order], kps=kps[ok][order])

    def _downscale(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The frame shrunk to ``max_side`` (area interpolation) and the (x, y) factors back to full size.

        Huge photos are first reduced by a whole factor, OpenCV's fast path for area
        interpolation (a 10000x10000 photo: ~0.8 s instead of ~2.2 s on one core).
        """
        h, w = rgb.shape[:2]
        side = max(h, w)
        if side <= self.cfg.max_side:
            return rgb, np.ones(2, np.float32)
        n = side // self.cfg.max_side
        src, (sx, sy) = rgb, (1.0, 1.0)
        if n >= 2:
            src = cv2.resize(rgb[: h // n * n, : w // n * n], (w // n, h // n), interpolation=cv2.INTER_AREA)
            sx = sy = float(n)
        f = self.cfg.max_side / side
        size = (max(1, round(w * f)), max(1, round(h * f)))
        small = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
        scale = np.array([sx * src.shape[1] / size[0], sy * src.shape[0] / size[1]], np.float32)
        return small, scale

    def _run(
        self, work: np.ndarray, box: tuple[int, int, int, int], frame: tuple[int, int], border: int = 0
    ) -> _Raw:
        """One model call on one tile (optionally framed by a black border).

        Returns the results in working-frame pixels, with boxes cut by an inner tile edge flagged.
        """
        x0, y0, x1, y1 = box
        tile = work if box == (0, 0, frame[0], frame[1]) else np.ascontiguousarray(work[y0:y1, x0:x1])
        if border:
            tile = cv2.copyMakeBorder(tile, border, border, border, border, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            x0, y0 = x0 - border, y0 - border
        th, tw = tile.shape[:2]
        result = self._graph.process(tile)
        dets = result.detections or []
        n = len(dets)
        xyxy = np.zeros((n, 4), np.float32)
        score = np.zeros((n,), np.float32)
        kps = np.zeros((n, 6, 2), np.float32)
        for i, d in enumerate(dets):
            rb = d.location_data.relative_bounding_box
            xyxy[i] = (rb.xmin * tw, rb.ymin * th, (rb.xmin + rb.width) * tw, (rb.ymin + rb.height) * th)
            score[i] = d.score[0]
            pts = d.location_data.relative_keypoints
            for k in range(min(6, len(pts))):
                kps[i, k] = (pts[k].x * tw, pts[k].y * th)
        m = _EDGE_MARGIN * max(tw, th)
        cut = np.zeros((n,), bool)
        if x0 > 0:
            cut |= xyxy[:, 0] < m
        if y0 > 0:
            cut |= xyxy[:, 1] < m
        if x1 < frame[0]:
            cut |= xyxy[:, 2] > tw - m
        if y1 < frame[1]:
            cut |= xyxy[:, 3] > th - m
        xyxy += np.array([x0, y0, x0, y0], np.float32)
        kps += np.array([x0, y0], np.float32)
        return _Raw(xyxy, score, kps, cut)

    def _merge(self, parts: list[_Raw]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes from all tiles: drop tile-cut boxes another tile saw whole, then NMS."""
        xyxy = np.concatenate([p.xyxy for p in parts])
        score = np.concatenate([p.score for p in parts])
        kps = np.concatenate([p.kps for p in parts])
        cut = np.concatenate([p.cut for p in parts])
        if len(parts) > 1 and cut.any() and (~cut).any():
            inter = _intersection(xyxy[cut], xyxy[~cut])
            area = (xyxy[cut, 2] - xyxy[cut, 0]) * (xyxy[cut, 3] - xyxy[cut, 1])
            covered = (inter / np.maximum(area, 1e-9)[:, None]).max(axis=1) > _CUT_COVERED
            drop = np.flatnonzero(cut)[covered]
            keep = np.ones(len(xyxy), bool)
            keep[drop] = False
            xyxy, score, kps = xyxy[keep], score[keep], kps[keep]
        if len(parts) > 1:
            idx = nms(xyxy, score, self.cfg.nms_iou)
            xyxy, score, kps = xyxy[idx], score[idx], kps[idx]
        return xyxy.copy(), score.copy(), kps.copy()


def _as_rgb(img: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 C-contiguous view or copy of a grey, RGB or RGBA array."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    elif img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    if img.shape[0] < 2 or img.shape[1] < 2:
        # A user can hand us such a file, so it gets a message rather than a traceback.
        raise FacestreamError(f"Image is too small to search for faces: {img.shape[1]}x{img.shape[0]} pixels.",
                              "Use an image at least 2x2 pixels (faces need far more).")
    return np.ascontiguousarray(img)
