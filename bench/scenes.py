"""Synthetic scenes with real faces at known sizes: the ground truth the detection benchmarks and tests need.

A camera over a door sees faces of 40-150 px in a 1080p frame; the bundled clip
shows big faces only. These helpers paste real faces (head and some shoulders,
edges feathered) at chosen sizes and places into frames, so recall can be
measured by face size, and render videos in which faces walk in, move, change
size and leave, for the live benchmark.

The truth box of a pasted face is the photo-mode detector's box on the source
photo (at its full resolution), scaled with the photo: "found" means a detection
overlapping it with IoU >= 0.3 (the standard of the issue that asked for it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facestream.stream.engine.detect import FaceDetector, box_iou
from facestream.stream.engine.imageio import load_image

FOUND_IOU = 0.3
CONTEXT = 1.8  # side of the pasted patch, in face-box widths (head, hair, some shoulders)


@dataclass
class FaceSource:
    """A real face to paste: its photo and the detector's box of the face in it."""

    identity: str
    path: Path
    rgb: np.ndarray
    box: np.ndarray  # (4,) xyxy in rgb pixels


def face_sources(items: Sequence[tuple[str, Path]], detector: FaceDetector, limit: int | None = None
                 ) -> list[FaceSource]:
    """The photos of ``items`` that show exactly one face (photo-mode detection), with that face's box."""
    out = []
    for identity, path in items:
        rgb = load_image(path)
        faces = detector.detect(rgb)
        if len(faces) == 1:
            out.append(FaceSource(identity, Path(path), rgb, faces.xyxy[0].copy()))
        if limit is not None and len(out) >= limit:
            break
    return out


def patch(source: FaceSource, width: float) -> tuple[np.ndarray, np.ndarray]:
    """The face with context, scaled so its box is ``width`` px wide, and that box within the patch."""
    x0, y0, x1, y1 = source.box
    bw = x1 - x0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.1 * bw  # a little more below the face (neck, shoulders)
    half = CONTEXT * bw / 2
    k = width / bw
    # crop the context square (padded by edge replication where the photo ends), then scale it
    ix0, iy0, ix1, iy1 = (int(math.floor(cx - half)), int(math.floor(cy - half)),
                          int(math.ceil(cx + half)), int(math.ceil(cy + half)))
    h, w = source.rgb.shape[:2]
    pad = max(0, -ix0, -iy0, ix1 - w, iy1 - h)
    img = cv2.copyMakeBorder(source.rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else source.rgb
    crop = img[iy0 + pad:iy1 + pad, ix0 + pad:ix1 + pad]
    size = max(2, int(round(crop.shape[1] * k)))
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    out = cv2.resize(crop, (size, size), interpolation=interp)
    sk = size / crop.shape[1]
    box = (source.box - np.array([ix0, iy0, ix0, iy0], np.float32)) * sk
    return out, box.astype(np.float32)


def paste(frame: np.ndarray, image: np.ndarray, box: np.ndarray, x: int, y: int) -> np.ndarray:
    """Paste ``image`` with its top-left corner at (x, y) (clipped to the frame), edges feathered;
    returns the face box in frame pixels (clipped to the frame)."""
    h, w = image.shape[:2]
    fh, fw = frame.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
    if x1 > x0 and y1 > y0:
        alpha = _feather(h, w)[y0 - y:y1 - y, x0 - x:x1 - x, None]
        region = frame[y0:y1, x0:x1].astype(np.float32)
        src = image[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.float32)
        frame[y0:y1, x0:x1] = (alpha * src + (1 - alpha) * region).astype(np.uint8)
    out = box + np.array([x, y, x, y], np.float32)
    out[[0, 2]] = np.clip(out[[0, 2]], 0, fw)
    out[[1, 3]] = np.clip(out[[1, 3]], 0, fh)
    return out


def _feather(h: int, w: int) -> np.ndarray:
    """An alpha mask that fades the outer eighth of a patch (no hard rectangle edges for the detector)."""
    ry = np.minimum(np.arange(h), np.arange(h)[::-1]) / max(1.0, h / 8)
    rx = np.minimum(np.arange(w), np.arange(w)[::-1]) / max(1.0, w / 8)
    return np.clip(np.minimum(ry[:, None], rx[None, :]), 0.0, 1.0).astype(np.float32)


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A face-free frame with structure: smooth colour fields, rectangles and ellipses (walls, doors,
    furniture), edges and fine noise, so a detector has something to be fooled by."""
    low = rng.uniform(40, 215, size=(6, 10, 3)).astype(np.float32)
    img = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(12, 24))):
        color = rng.uniform(20, 235, 3).tolist()
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.6:
            w, h = int(rng.integers(width // 40, width // 4)), int(rng.integers(height // 30, height // 2))
            cv2.rectangle(img, (x, y), (x + w, y + h), color, -1 if rng.random() < 0.7 else 3)
        else:
            axes = (int(rng.integers(width // 60, width // 8)), int(rng.integers(height // 60, height // 6)))
            cv2.ellipse(img, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
    img = cv2.GaussianBlur(img, (0, 0), 1.2)
    img += rng.normal(0, 6, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass
class Scene:
    frame: np.ndarray
    boxes: np.ndarray  # (n, 4) truth
    identities: list[str] = field(default_factory=list)


def scene(rng: np.random.Generator, sources: Sequence[FaceSource], width_px: float, n: int = 6,
          size: tuple[int, int] = (1920, 1080), bg: np.ndarray | None = None) -> Scene:
    """A frame with ``n`` faces (random sources) of ``width_px`` at random places that do not overlap."""
    fw, fh = size
    frame = background(rng, fw, fh) if bg is None else bg.copy()
    boxes: list[np.ndarray] = []
    ids: list[str] = []
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(n):
        src = sources[int(rng.integers(len(sources)))]
        img, box = patch(src, width_px)
        h, w = img.shape[:2]
        for _try in range(50):
            x, y = int(rng.integers(0, max(1, fw - w))), int(rng.integers(0, max(1, fh - h)))
            if all(x + w <= a or a + c <= x or y + h <= b or b + d <= y for a, b, c, d in taken):
                break
        else:
            continue
        taken.append((x, y, w, h))
        boxes.append(paste(frame, img, box, x, y))
        ids.append(src.identity)
    return Scene(frame, np.array(boxes, np.float32).reshape(-1, 4), ids)


def closeup(source: FaceSource, fill: float, side: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """A tight picture of the face: the face box is ``fill`` (0.5-1.0) of the picture's width, as in a
    selfie or a kiosk camera; returns the picture (``side`` px square) and the face box in it."""
    x0, y0, x1, y1 = source.box
    bw = x1 - x0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = bw / fill / 2
    h, w = source.rgb.shape[:2]
    pad = int(max(0, half - cx, half - cy, cx + half - w, cy + half - h)) + 1
    img = cv2.copyMakeBorder(source.rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else source.rgb
    a, b = int(round(cx - half)) + pad, int(round(cy - half)) + pad
    crop = img[b:b + int(round(2 * half)), a:a + int(round(2 * half))]
    k = side / crop.shape[1]
    out = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    box = (source.box - np.array([a - pad, b - pad, a - pad, b - pad], np.float32)) * k
    return out, box.astype(np.float32)


def matches(truth: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, int]:
    """Which truth boxes a detection found (IoU >= 0.3, one detection per face), and how many detections
    matched no face (false detections)."""
    if not len(truth):
        return np.zeros(0, bool), len(found)
    if not len(found):
        return np.zeros(len(truth), bool), 0
    iou = box_iou(truth, found)
    hit = np.zeros(len(truth), bool)
    used = np.zeros(len(found), bool)
    for i, j in sorted(np.argwhere(iou >= FOUND_IOU).tolist(), key=lambda ij: -iou[ij[0], ij[1]]):
        if not hit[i] and not used[j]:
            hit[i] = used[j] = True
    false = int((box_iou(found, truth).max(axis=1) < FOUND_IOU).sum())
    return hit, false


@dataclass
class Walker:
    """One face crossing a video: it enters at ``t0``, moves from ``start`` to ``end`` (its centre, px) while
    its width goes from ``w0`` to ``w1``, and leaves at ``t1``. With ``views`` (other photos of the same
    person) the walk shows ``source`` and then each view for an equal share of its time, as a camera sees
    a head turn and the light change along a corridor."""

    source: FaceSource
    t0: float
    t1: float
    start: tuple[float, float]
    end: tuple[float, float]
    w0: float
    w1: float
    views: tuple[FaceSource, ...] = ()

    def view_at(self, t: float) -> int:
        """Which photo the walker shows at ``t``: 0 is ``source``, i > 0 is ``views[i - 1]``."""
        n = 1 + len(self.views)
        u = (t - self.t0) / max(1e-9, self.t1 - self.t0)
        return min(n - 1, max(0, int(u * n)))

    def photo(self, index: int) -> FaceSource:
        return self.source if index == 0 else self.views[index - 1]

    def at(self, t: float) -> tuple[float, float, float] | None:
        """(centre x, centre y, face width) at time ``t``, or None when not in the picture."""
        if not self.t0 <= t < self.t1:
            return None
        u = (t - self.t0) / (self.t1 - self.t0)
        return (self.start[0] + u * (self.end[0] - self.start[0]), self.start[1] + u * (self.end[1] - self.start[1]),
                self.w0 + u * (self.w1 - self.w0))


def walkers(rng: np.random.Generator, sources: Sequence[FaceSource], seconds: float, size: tuple[int, int],
            widths: tuple[float, float] = (40, 200), per_second: float = 0.5) -> list[Walker]:
    """Faces that walk in from a side, cross part of the frame (growing or shrinking, as towards or away
    from a camera) and leave, one every ``1 / per_second`` s on average, 2-6 s each."""
    fw, fh = size
    out = []
    t = 0.5
    while t < seconds - 1.0:
        src = sources[int(rng.integers(len(sources)))]
        dur = float(rng.uniform(2.0, 6.0))
        w0, w1 = (float(v) for v in rng.uniform(*widths, size=2))
        y0, y1 = (float(v) for v in rng.uniform(0.2 * fh, 0.8 * fh, size=2))
        xa, xb = (float(v) for v in sorted(rng.uniform(0.1 * fw, 0.9 * fw, size=2)))
        start, end = ((xa, y0), (xb, y1)) if rng.random() < 0.5 else ((xb, y0), (xa, y1))
        out.append(Walker(src, t, min(seconds, t + dur), start, end, w0, w1))
        t += float(rng.exponential(1.0 / per_second))
    return out


def parade(rng: np.random.Generator, people: Sequence[Sequence[FaceSource]], size: tuple[int, int],
           widths: tuple[float, float] = (40, 200), per_second: float = 0.5) -> list[Walker]:
    """Each person walks by exactly once, in random order, showing each of their photos in turn (the
    first is the walker's ``source``, the rest its ``views``); arrivals as :func:`walkers`, 2-6 s each.
    The video needs ``walkers[-1].t1`` seconds."""
    fw, fh = size
    out = []
    t = 0.5
    for i in rng.permutation(len(people)):
        photos = list(people[int(i)])
        dur = float(rng.uniform(2.0, 6.0))
        w0, w1 = (float(v) for v in rng.uniform(*widths, size=2))
        y0, y1 = (float(v) for v in rng.uniform(0.2 * fh, 0.8 * fh, size=2))
        xa, xb = (float(v) for v in sorted(rng.uniform(0.1 * fw, 0.9 * fw, size=2)))
        start, end = ((xa, y0), (xb, y1)) if rng.random() < 0.5 else ((xb, y0), (xa, y1))
        out.append(Walker(photos[0], t, t + dur, start, end, w0, w1, tuple(photos[1:])))
        t += float(rng.exponential(1.0 / per_second))
    return out


def render(walkers_: Sequence[Walker], bg: np.ndarray, t: float, cache: dict | None = None
           ) -> tuple[np.ndarray, list[tuple[int, np.ndarray, float]]]:
    """The frame at time ``t`` and, per face in the picture, (walker index, truth box, width).

    Faces are pasted in walker order, so a later one can hide an earlier one as it
    crosses; a face less than 70% visible (inside the frame and not covered by a
    later patch) is not in the truth: nothing could find it.
    """
    frame = bg.copy()
    placed: list[tuple[int, np.ndarray, float, tuple[int, int, int, int]]] = []
    for k, wk in enumerate(walkers_):
        state = wk.at(t)
        if state is None:
            continue
        cx, cy, width = state
        view = wk.view_at(t)
        key = (k, view, int(round(width)))
        if cache is not None and key in cache:
            img, box = cache[key]
        else:
            img, box = patch(wk.photo(view), width)
            if cache is not None:
                cache[key] = (img, box)
        x, y = int(round(cx - (box[0] + box[2]) / 2)), int(round(cy - (box[1] + box[3]) / 2))
        face = paste(frame, img, box, x, y)
        area = float((box[2] - box[0]) * (box[3] - box[1]))  # before clipping to the frame
        placed.append((k, face, width, area, (x, y, x + img.shape[1], y + img.shape[0])))
    truth = []
    for n, (k, face, width, area, _) in enumerate(placed):
        inside = float((face[2] - face[0]) * (face[3] - face[1]))
        hidden = sum(_overlap(face, rect) for *_, rect in placed[n + 1:])
        if inside - hidden >= 0.7 * area:
            truth.append((k, face, width))
    return frame, truth


def _overlap(box: np.ndarray, rect: tuple[int, int, int, int]) -> float:
    w = min(box[2], rect[2]) - max(box[0], rect[0])
    h = min(box[3], rect[3]) - max(box[1], rect[1])
    return float(max(0.0, w) * max(0.0, h))


def iter_video(walkers_: Sequence[Walker], bg: np.ndarray, fps: float, seconds: float
               ) -> Iterator[tuple[int, float, np.ndarray, list[tuple[int, np.ndarray, float]]]]:
    """(frame index, time, frame, truth) for every frame of the video."""
    cache: dict = {}
    for i in range(int(seconds * fps)):
        t = i / fps
        frame, truth = render(walkers_, bg, t, cache)
        if i % 30 == 0:  # forget the patches of walkers who have left (a long parade would hold gigabytes)
            for key in [key for key in cache if walkers_[key[0]].t1 < t]:
                del cache[key]
        yield i, t, frame, truth
