"""Face detection: BlazeFace on *views* of an image, batched per model range, merged into one set of faces.

A view is a square region of the image searched by one BlazeFace range: the
whole image, a tile, or a crop around a face being tracked. A 40 px face in a
1920x1080 frame shrinks to 4 px when the whole frame is fed to a 192 px model,
and vanishes; in a 512 px tile it keeps 15 px, which the full-range model finds;
in a crop around its track it fills half the input. Every view of one range
becomes one row of one batched model call.

* **Photos** (:meth:`FaceDetector.detect`: the CLI, enrolment, the demo, the
  trainer) are searched exhaustively: both ranges on the whole image (the
  full-range model with black context around it, which it needs to see faces
  that fill the picture; the short-range model, made for close faces) and
  full-range tiles where the image is larger than a tile.
* **Live frames** get the views :mod:`facestream.stream.live.scheduler` picks;
  the pipeline runs them through :meth:`FaceDetector.run_views`.

Engines: the port of the models (:mod:`.networks.blazeface`, converted once into
the model cache) runs on ONNX Runtime, torch or TensorRT (``detector.engine``,
chosen like the embedder's); MediaPipe's own graph is the reference engine
(``detector.engine: mediapipe``), fed the very same letterboxed views, so the
two can be compared face for face.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.config import DetectorConfig
from facestream.stream.engine.blazeface import (
    RANGES,
    BlazeFaceOptions,
    Letterbox,
    RawFaces,
    decode,
    letterbox,
    weighted_nms,
)
from facestream.stream.engine.boxes import box_iou  # noqa: F401 - re-exported: callers use detect.box_iou
from facestream.stream.engine.faces import Faces
from facestream.stream.engine.model_store import get_model
from facestream.stream.engine.runtimes import create_runtime

log = logging.getLogger(__name__)

# A box whose side lies within this fraction of the view side of an inner tile edge
# was probably cut by the tile, and a neighbour tile (or a larger view) may see it whole.
# Bump when a change alters the boxes a photo search returns (views, tiles, the mapping back, merging):
# cached training chips are keyed by it.
SEARCH_VERSION = 1

_EDGE_MARGIN = 0.01
# A cut box is dropped when this much of its area lies inside a box that was not cut.
_CUT_COVERED = 0.5
# The whole-image views see the image inside a black border of this fraction of its
# long side: full-range BlazeFace misses faces that fill or touch the frame (close-ups,
# selfies) and finds them once they have some context around them. Measured on the
# shared photos: 0.1-0.2 finds every single-person photo once; 0.15 is the middle. The
# short-range model, made for close faces, loses them with that much border: 0.03 there.
FRAME_BORDER = {"full": 0.15, "short": 0.03}
# A face a crop finds again overlaps the candidate it was cut around by more than this.
FOUND_AGAIN_IOU = 0.3
# A box is a shell around another face when that face is at most this share of its area and lies inside it
# at least this much (see _drop_shells).
SHELL_AREA = 0.5
SHELL_INSIDE = 0.8


@dataclass(frozen=True)
class View:
    """A square region of an image to search with one BlazeFace range.

    Attributes:
        kind: ``"full"`` or ``"short"`` (the model range).
        box: the region ``(x0, y0, x1, y1)`` in image pixels; it may reach outside the
            image (that part is black), and a non-square region is centred in the square.
        inner: which of its edges (left, top, right, bottom) are inner edges of a tile
            grid, where a face may be cut in two.
    """

    kind: str
    box: tuple[float, float, float, float]
    inner: tuple[bool, bool, bool, bool] = (False, False, False, False)


def crop_square(box: np.ndarray | tuple[float, ...], scale: float) -> tuple[float, float, float, float]:
    """The square ``scale`` face widths wide centred on a face box (xyxy)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0, 8.0) * scale / 2
    return cx - half, cy - half, cx + half, cy + half


def nms(xyxy: np.ndarray, score: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
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

    return [(x, y, min(x + tile, width), min(y + tile, height)) for y in starts(height) for x in starts(width)]


def tile_views(width: int, height: int, tile: int, overlap: float, kind: str = "full") -> list[View]:
    """The tiles of :func:`tile_grid` as views, their inner edges marked."""
    return [View(kind, (float(x0), float(y0), float(x1), float(y1)), (x0 > 0, y0 > 0, x1 < width, y1 < height))
            for x0, y0, x1, y1 in tile_grid(width, height, tile, overlap)]


def whole_views(width: int, height: int, kinds: tuple[str, ...] = ("full", "short")) -> list[View]:
    """The whole image as one view per range, framed by that range's black border."""
    views = []
    for kind in kinds:
        b = FRAME_BORDER[kind] * max(width, height)
        views.append(View(kind, (-b, -b, width + b, height + b)))
    return views


# --------------------------------------------------------------------------- engines


class ModelEngine(abc.ABC):
    """Runs one BlazeFace range on letterboxed views: (n, S, S, 3) uint8 -> faces in tensor pixels per view."""

    name: str

    @abc.abstractmethod
    def infer(self, options: BlazeFaceOptions, tensors: np.ndarray, min_score: float) -> list[RawFaces]:
        """Faces per view (the ported network, or MediaPipe's graph)."""

    def start(self, options: BlazeFaceOptions, tensors: np.ndarray, min_score: float
              ) -> Callable[[], list[RawFaces]]:
        """Start :meth:`infer` and return the call that waits for its result (engines that can run two
        ranges at once override it; the default runs now)."""
        found = self.infer(options, tensors, min_score)
        return lambda: found

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing
        """Release the models."""


class PortedEngine(ModelEngine):
    """The port of the BlazeFace models on a runtime (ONNX Runtime, torch or TensorRT), one batched call per range.

    Args:
        runners: per range, the call that turns uint8 tensors into output rows: a
            runtime's ``run``, or a batcher in front of it that also takes other
            streams' views (the live pipeline).
        name: which runtime runs, for logs.
    """

    def __init__(self, runners: dict[str, Callable[[np.ndarray], np.ndarray]], name: str):
        self.runners = runners
        self.name = name
        self._anchors = {kind: options.anchors() for kind, options in RANGES.items()}
        self._identity = Letterbox(0.0, 0.0, 1.0)

    def infer(self, options: BlazeFaceOptions, tensors: np.ndarray, min_score: float) -> list[RawFaces]:
        return self._decode(options, self.runners[options.kind](tensors), min_score)

    def start(self, options: BlazeFaceOptions, tensors: np.ndarray, min_score: float
              ) -> Callable[[], list[RawFaces]]:
        """With batchers as runners (live), the call is queued and this thread goes on: the two ranges
        then run side by side on two cores while the next views are prepared."""
        submit = getattr(self.runners[options.kind], "submit", None)
        if submit is None:
            return super().start(options, tensors, min_score)
        future = submit(tensors)
        return lambda: self._decode(options, future.result(), min_score)

    def _decode(self, options: BlazeFaceOptions, rows: np.ndarray, min_score: float) -> list[RawFaces]:
        anchors = self._anchors[options.kind]
        return [weighted_nms(decode(row, options, anchors, min_score, self._identity)) for row in rows]


class MediapipeEngine(ModelEngine):
    """MediaPipe's own face detection graphs: the reference the port is checked against.

    It is fed the same letterboxed views as the port (at the model's own size, so
    MediaPipe's resize is the identity) and runs them one at a time: a graph cannot batch.
    """

    name = "mediapipe"

    def __init__(self, min_score: float):
        import mediapipe as mp  # heavy import, only when this engine is asked for

        self._lock = threading.Lock()
        with _native_stderr_silenced():
            self._graphs = {kind: mp.solutions.face_detection.FaceDetection(
                model_selection=0 if kind == "short" else 1, min_detection_confidence=float(min_score))
                for kind in RANGES}
            for graph in self._graphs.values():  # TFLite announces its delegate on the first run: now, quietly
                graph.process(np.zeros((64, 64, 3), np.uint8))
        self.min_score = float(min_score)

    def infer(self, options: BlazeFaceOptions, tensors: np.ndarray, min_score: float) -> list[RawFaces]:
        out = []
        s = float(options.size)
        with self._lock:
            for t in tensors:
                dets = self._graphs[options.kind].process(np.ascontiguousarray(t)).detections or []
                boxes, scores, kps = [], [], []
                for d in dets:
                    if d.score[0] < min_score:
                        continue
                    rb = d.location_data.relative_bounding_box
                    boxes.append((rb.xmin * s, rb.ymin * s, (rb.xmin + rb.width) * s, (rb.ymin + rb.height) * s))
                    scores.append(d.score[0])
                    kps.append([(k.x * s, k.y * s) for k in d.location_data.relative_keypoints][:6])
                out.append(RawFaces(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                                    np.asarray(kps, np.float32).reshape(-1, 6, 2)))
        return out

    def close(self) -> None:
        with self._lock:
            for graph in self._graphs.values():
                graph.close()
            self._graphs = {}


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Mute file descriptor 2 while MediaPipe's C++ core starts.

    TFLite and absl print INFO/WARNING lines straight to fd 2 when a graph is
    built and first run; no environment variable turns them off, and a user of
    the CLI should see only our messages. Failures still surface: MediaPipe
    raises Python exceptions for them.
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


def create_engine(cfg: DetectorConfig) -> ModelEngine:
    """The engine ``detector.engine`` names (``auto``: the port on the fastest runtime, as for the embedder).

    Raises:
        FacestreamError: the engine asked for cannot run here (never a silent fallback).
    """
    if cfg.engine == "mediapipe":
        return MediapipeEngine(cfg.min_score)
    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    names = []
    for kind in RANGES:
        runtime = create_runtime(get_model(f"blazeface-{kind}"), cfg)
        runners[kind] = runtime.run
        names.append(runtime.name)
    return PortedEngine(runners, names[0])


# --------------------------------------------------------------------------- the detector


class FaceDetector:
    """Finds faces in RGB images; safe to share between threads.

    Args:
        cfg: detector settings (engine, score threshold, tiles, working size).
        engine: the model engine to use (default: the one ``cfg.engine`` names); the
            live pipeline passes one whose calls go through its batchers.
    """

    def __init__(self, cfg: DetectorConfig | None = None, engine: ModelEngine | None = None):
        self.cfg = cfg or DetectorConfig()
        self.engine = engine if engine is not None else create_engine(self.cfg)
        log.info("face detector: BlazeFace on %s (min_score=%.2f, tiles %s of %d px)", self.engine.name,
                 self.cfg.min_score, self.cfg.tiling, self.cfg.tile_size)

    def close(self) -> None:
        """Release the models."""
        self.engine.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def uses_tiles(self, width: int, height: int) -> bool:
        """Whether an image of this (working) size is searched in tiles."""
        if self.cfg.tiling == "on":
            return True
        return self.cfg.tiling == "auto" and max(width, height) > self.cfg.tile_size

    # -- photos --------------------------------------------------------------------------------
    def detect(self, rgb: np.ndarray) -> Faces:
        """Every face in an (H, W, 3) uint8 RGB image, searched at every scale, in that image's pixels.

        Boxes are clipped to the image; boxes that are degenerate after clipping
        are dropped. ``kps`` holds BlazeFace's 6 keypoints (eyes, nose tip, mouth,
        ear tragions) in pixels.

        Raises:
            FacestreamError: the image is smaller than 2x2 pixels.
        """
        rgb = as_rgb(rgb)
        work, scale = self._downscale(rgb)
        wh, ww = work.shape[:2]
        views = whole_views(ww, wh)
        trusted = [True] * len(views)
        if self.uses_tiles(ww, wh):
            tiles = [v for v in tile_views(ww, wh, self.cfg.tile_size, self.cfg.tile_overlap)
                     if v.box != (0.0, 0.0, float(ww), float(wh))]
            views += tiles
            trusted += [False] * len(tiles)
        merged = self.search(work, views, trusted)
        merged.xyxy *= np.tile(scale, 2)
        merged.kps *= scale
        return self.to_faces(merged, rgb.shape[1], rgb.shape[0])

    def _downscale(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The image shrunk to ``max_side`` (area interpolation) and the (x, y) factors back to full size.

        Huge photos are first reduced by a whole factor, OpenCV's fast path for area
        interpolation (a 10000x10000 photo: ~0.8 s instead of ~2.2 s on one core).
        """
        h, w = rgb.shape[:2]
        side = max(h, w)
        if side <= self.cfg.max_side:
            return rgb, np.ones(2, np.float32)
        n = min(side // self.cfg.max_side, min(h, w))  # a thin image must keep at least one row and column
        src, (sx, sy) = rgb, (1.0, 1.0)
        if n >= 2:
            src = cv2.resize(rgb[: h // n * n, : w // n * n], (w // n, h // n), interpolation=cv2.INTER_AREA)
            sx = sy = float(n)
        f = self.cfg.max_side / side
        size = (max(1, round(w * f)), max(1, round(h * f)))
        small = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
        scale = np.array([sx * src.shape[1] / size[0], sy * src.shape[0] / size[1]], np.float32)
        return small, scale

    # -- views -------------------------------------------------------------------------------
    def run_views(self, image: np.ndarray, views: list[View]) -> list[RawFaces]:
        """Each view's faces in image pixels: one batched model call per range (both ranges at once where
        the engine can)."""
        out: list[RawFaces] = [RawFaces.empty()] * len(views)
        started = []
        pyramid = _Pyramid(image, self.cfg.resample == "area")
        for kind, options in RANGES.items():
            idx = [i for i, v in enumerate(views) if v.kind == kind]
            if idx:
                boxes = [pyramid.letterbox(views[i].box, options.size) for i in idx]
                wait = self.engine.start(options, np.stack([b[0] for b in boxes]), self.cfg.min_score)
                started.append((idx, [b[1] for b in boxes], wait))
        for idx, transforms, wait in started:
            for i, transform, raw in zip(idx, transforms, wait(), strict=True):
                in_frame = transform.to_frame(raw.xyxy.reshape(-1, 2, 2)).reshape(-1, 4)
                xyxy = RANGES[views[i].kind].as_full_range(in_frame)
                out[i] = RawFaces(xyxy, raw.score, transform.to_frame(raw.kps))
        return out

    def merge(self, parts: list[RawFaces], views: list[View]) -> RawFaces:
        """One face per person from the faces of all views: tile-cut boxes another view saw whole are
        dropped, then overlapping boxes are blended (weighted NMS at ``nms_iou``)."""
        if not parts:
            return RawFaces.empty()
        faces = RawFaces.concat(parts)
        cut = np.concatenate([_cut(p, v) for p, v in zip(parts, views, strict=True)]) if len(faces) else \
            np.zeros(0, bool)
        if cut.any() and (~cut).any():
            inter = _intersection(faces.xyxy[cut], faces.xyxy[~cut])
            area = (faces.xyxy[cut, 2] - faces.xyxy[cut, 0]) * (faces.xyxy[cut, 3] - faces.xyxy[cut, 1])
            covered = (inter / np.maximum(area, 1e-9)[:, None]).max(axis=1) > _CUT_COVERED
            keep = np.ones(len(faces), bool)
            keep[np.flatnonzero(cut)[covered]] = False
            faces = faces.select(keep)
        faces = weighted_nms(faces, self.cfg.nms_iou) if len(parts) > 1 else faces
        return _drop_shells(faces)

    def search(self, image: np.ndarray, views: list[View], trusted: list[bool], crop_scale: float = 2.0
               ) -> RawFaces:
        """The faces of all views, merged; a face only untrusted views (tiles) saw counts once a crop around
        it finds it again (:meth:`confirm`)."""
        parts = self.run_views(image, views)
        merged = self.merge(parts, views)
        verified = self.verified(merged, parts, trusted)
        if verified.all():
            return merged
        sure = merged.select(np.flatnonzero(verified))
        again = self.confirm(image, merged.select(np.flatnonzero(~verified)), crop_scale)
        if len(sure) and len(again):  # a crop that found an already known face is no new face
            again = again.select(np.flatnonzero(box_iou(again.xyxy, sure.xyxy).max(axis=1) <= self.cfg.nms_iou))
        return RawFaces.concat([sure, again])

    def verified(self, merged: RawFaces, parts: list[RawFaces], trusted: list[bool]) -> np.ndarray:
        """Which merged faces a trusted view (the whole image, a crop) saw, not only a tile.

        A 512 px tile shown to the full-range model finds small faces, and also
        faces in textures (a shirt, a hand, a poster) that no larger view sees;
        such a face needs a second look before it counts.
        """
        seen = [p.xyxy for p, ok in zip(parts, trusted, strict=True) if ok and len(p)]
        if not len(merged) or not seen:
            return np.zeros(len(merged), bool)
        return box_iou(merged.xyxy, np.concatenate(seen)).max(axis=1) > self.cfg.nms_iou

    def confirm(self, image: np.ndarray, candidates: RawFaces, scale: float = 2.0) -> RawFaces:
        """The candidates that a short-range look at a crop around each (``scale`` face widths) finds again
        with at least ``confirm_score``, with the crop's (sharper) box.

        Measured on pasted faces of 24-96 px: every one scores >= 0.73 in such a crop
        (5th percentile 0.80); faces the tiles saw in the shared photos' textures
        score <= 0.56 there (``bench/detect.py``).
        """
        if not len(candidates):
            return candidates
        views = [View("short", crop_square(box, scale)) for box in candidates.xyxy]
        kept = []
        for box, found in zip(candidates.xyxy, self.run_views(image, views), strict=True):
            found = found.select(np.flatnonzero(found.score >= self.cfg.confirm_score))
            if len(found):
                iou = box_iou(box[None], found.xyxy)[0]
                j = int(iou.argmax())
                if iou[j] > FOUND_AGAIN_IOU:
                    kept.append(found.select(np.array([j])))
        return RawFaces.concat(kept)

    @staticmethod
    def to_faces(raw: RawFaces, width: int, height: int) -> Faces:
        """Faces clipped to the image, degenerate boxes dropped, best score first."""
        xyxy = raw.xyxy.copy()
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, width)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, height)
        ok = ((xyxy[:, 2] - xyxy[:, 0]) >= 2) & ((xyxy[:, 3] - xyxy[:, 1]) >= 2)
        order = np.argsort(-raw.score[ok], kind="stable")
        return Faces(xyxy=xyxy[ok][order], score=raw.score[ok][order], kps=raw.kps[ok][order])


class _Pyramid:
    """An image and its halvings, made when a view first needs them: a 1080p frame shrunk to a 192 px
    tensor is resized from its quarter (two cheap exact halvings, then at most a halving's worth of
    area averaging), not area-averaged from full size every time."""

    def __init__(self, image: np.ndarray, enabled: bool):
        self.levels = [image]
        self.enabled = enabled  # "linear" resampling reproduces MediaPipe, which warps from full size

    def letterbox(self, box: tuple[float, float, float, float], size: int) -> tuple[np.ndarray, Letterbox]:
        side = max(box[2] - box[0], box[3] - box[1])
        level = max(0, int(np.floor(np.log2(side / size)))) if self.enabled and side > 2 * size else 0
        while len(self.levels) <= level and min(self.levels[-1].shape[:2]) >= 4:
            prev = self.levels[-1]
            h, w = prev.shape[0] // 2, prev.shape[1] // 2
            self.levels.append(cv2.resize(prev[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA))
        level = min(level, len(self.levels) - 1)
        if level == 0:
            return letterbox(self.levels[0], box, size, "area" if self.enabled else "linear")
        f = 2 ** level
        x0, y0, x1, y1 = box
        image, transform = letterbox(self.levels[level], (x0 / f, y0 / f, x1 / f, y1 / f), size, "area")
        return image, Letterbox(transform.x0 * f, transform.y0 * f, transform.scale / f)


def _drop_shells(faces: RawFaces) -> RawFaces:
    """Drop boxes that wrap a smaller, surer face: a coarse view's wrong-scale guess around a face that a
    closer view found (faces do not nest; a 64 px face in a 1080p frame is 6 px to the whole-frame model,
    which may answer with a 150-400 px box around it)."""
    n = len(faces)
    if n < 2:
        return faces
    area = (faces.xyxy[:, 2] - faces.xyxy[:, 0]) * (faces.xyxy[:, 3] - faces.xyxy[:, 1])
    inside = _intersection(faces.xyxy, faces.xyxy) / np.maximum(area, 1e-9)[:, None]  # share of row i in col j
    small = area[:, None] <= SHELL_AREA * area[None, :]
    surer = faces.score[:, None] >= faces.score[None, :]
    wrapped = (inside >= SHELL_INSIDE) & small & surer  # [i, j]: face i lies in box j, smaller and surer
    np.fill_diagonal(wrapped, False)
    shells = wrapped.any(axis=0)
    return faces.select(np.flatnonzero(~shells)) if shells.any() else faces


def _cut(raw: RawFaces, view: View) -> np.ndarray:
    """Which faces of a view touch one of its inner tile edges (a neighbour tile may see them whole)."""
    if not len(raw) or not any(view.inner):
        return np.zeros(len(raw), bool)
    x0, y0, x1, y1 = view.box
    m = _EDGE_MARGIN * max(x1 - x0, y1 - y0)
    left, top, right, bottom = view.inner
    b = raw.xyxy
    cut = np.zeros(len(raw), bool)
    if left:
        cut |= b[:, 0] < x0 + m
    if top:
        cut |= b[:, 1] < y0 + m
    if right:
        cut |= b[:, 2] > x1 - m
    if bottom:
        cut |= b[:, 3] > y1 - m
    return cut


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


MAX_ASPECT = 50  # a longer side than this many times the shorter one is a strip, not a photo of a face


def as_rgb(img: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 C-contiguous view or copy of a grey, RGB or RGBA array.

    Raises:
        ValueError: not uint8, or not an image shape (a programming error).
        FacestreamError: smaller than 2x2 pixels (a user can hand us such a file).
    """
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise FacestreamError(f"Image is too small to search for faces: {img.shape[1]}x{img.shape[0]} pixels.",
                              "Use an image at least 2x2 pixels (faces need far more).")
    h, w = img.shape[:2]
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise FacestreamError(f"Image is {w}x{h} pixels, a strip more than {MAX_ASPECT}:1: no face fits in it.",
                              "Use a photo of ordinary proportions (crop it around the face).")
    return np.ascontiguousarray(img)
