"""Presentation attacks rendered from real photos: a print or a phone held up to a camera and moved.

A photo is a plane (or a slightly bent sheet) in front of a pinhole camera.
The holder turns and shifts it smoothly (yaw, pitch, roll and translation as
slow sinusoids with random phases), the camera adds blur, sensor noise and JPEG.
Each frame is the exact perspective image of that sheet, so the only thing that
separates it from a person is what a sheet cannot do: show a 3D head that turns,
blink, or change expression. Kinds (ISO/IEC 30107 "presentation attack
instruments"):

* ``print``: a flat photo.
* ``bent``: the photo bent like a held sheet (a cylinder, up to ~15% of its width deep).
* ``screen``: the photo on a phone: a bright screen with a dark bezel, a fine
  pixel grid (it aliases into moire in the camera image) and a little glare.

Used by ``bench/liveness.py`` and the liveness tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from bench.scenes import FaceSource, background

KINDS = ("print", "bent", "screen")


@dataclass(frozen=True)
class Motion:
    """Smooth hand motion: amplitudes (degrees, fractions of the distance) and periods (s) of each axis."""

    yaw: float
    pitch: float
    roll: float
    shift: float
    periods: tuple[float, float, float, float]
    phases: tuple[float, float, float, float]

    @classmethod
    def random(cls, rng: np.random.Generator, strength: float = 1.0) -> Motion:
        return cls(yaw=float(rng.uniform(8, 25)) * strength, pitch=float(rng.uniform(5, 15)) * strength,
                   roll=float(rng.uniform(2, 8)) * strength, shift=float(rng.uniform(0.03, 0.1)) * strength,
                   periods=tuple(float(p) for p in rng.uniform(1.5, 4.0, 4)),  # type: ignore[arg-type]
                   phases=tuple(float(p) for p in rng.uniform(0, 2 * math.pi, 4)))  # type: ignore[arg-type]

    def pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Rotation (3x3) and translation (3,) of the sheet at time ``t`` (distance 1 along the axis)."""
        s = [math.sin(2 * math.pi * t / p + ph) for p, ph in zip(self.periods, self.phases, strict=True)]
        yaw, pitch, roll = (math.radians(a * v) for a, v in zip((self.yaw, self.pitch, self.roll), s[:3],
                                                                 strict=True))
        rx = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
        ry = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
        rz = np.array([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]])
        shift = self.shift * s[3]
        return rz @ ry @ rx, np.array([shift, 0.5 * shift, 1.0 + 0.5 * shift])


def _texture(source: FaceSource, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The sheet's picture (the photo, or the photo on a phone) and the face box on it."""
    x0, y0, x1, y1 = source.box
    bw = x1 - x0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = 1.4 * bw  # a portrait: head and shoulders, as people print or show them
    h, w = source.rgb.shape[:2]
    pad = int(max(0, half - cx, half - cy, cx + half - w, cy + half - h)) + 1
    img = cv2.copyMakeBorder(source.rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    ix0, iy0 = int(cx - half) + pad, int(cy - half) + pad
    side = int(2 * half)
    tex = img[iy0:iy0 + side, ix0:ix0 + side].copy()
    box = source.box - np.array([ix0 - pad, iy0 - pad] * 2, np.float32)
    if kind != "screen":
        return tex, box
    # a phone: the picture at screen brightness on a pixel grid, inside a dark bezel
    bright = np.clip(tex.astype(np.float32) * 1.15 + 25, 0, 255)
    period = int(rng.integers(2, 4))
    grid = np.ones(tex.shape[:2], np.float32)
    grid[::period, :] *= 0.8
    grid[:, ::period] *= 0.8
    screen = bright * grid[..., None]
    bezel = max(4, side // 14)
    out = np.full((side + 2 * bezel, side + 2 * bezel, 3), 18, np.float32)
    out[bezel:-bezel, bezel:-bezel] = screen
    glare = np.zeros(out.shape[:2], np.float32)
    cv2.ellipse(glare, (int(out.shape[1] * rng.uniform(0.2, 0.8)), int(out.shape[0] * rng.uniform(0.1, 0.4))),
                (out.shape[1] // 3, out.shape[0] // 8), float(rng.uniform(0, 180)), 0, 360, 40.0, -1)
    out += cv2.GaussianBlur(glare, (0, 0), out.shape[1] / 12)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8), box + bezel


def _project(points: np.ndarray, rot: np.ndarray, trans: np.ndarray, f: float, c: tuple[float, float]) -> np.ndarray:
    cam = points @ rot.T + trans
    return np.stack([f * cam[:, 0] / cam[:, 2] + c[0], f * cam[:, 1] / cam[:, 2] + c[1]], axis=1)


def render_attack(source: FaceSource, kind: str, rng: np.random.Generator, *, size: tuple[int, int] = (640, 360),
                  face_px: float = 90.0, seconds: float = 3.0, fps: float = 30.0,
                  motion: Motion | None = None) -> Iterator[np.ndarray]:
    """Frames (RGB) of one attack: ``source``'s face about ``face_px`` wide, held up and moved for ``seconds``."""
    if kind not in KINDS:
        raise ValueError(f"unknown attack kind {kind!r}; one of {KINDS}")
    tex, box = _texture(source, kind, rng)
    motion = motion or Motion.random(rng)
    width, height = size
    f = float(width)
    k = face_px / (float(box[2] - box[0]) * f)  # sheet units per texture pixel at distance 1
    th, tw = tex.shape[:2]
    depth = float(rng.uniform(0.08, 0.15)) * tw * k if kind == "bent" else 0.0
    strips = 12 if kind == "bent" else 1
    centre = (width / 2 + float(rng.uniform(-0.2, 0.2)) * width, height / 2 + float(rng.uniform(-0.1, 0.1)) * height)
    back = background(rng, width, height)
    blur = float(rng.uniform(0.4, 1.1))
    noise = float(rng.uniform(1.5, 4.0))
    quality = int(rng.integers(60, 90))
    edges = np.linspace(0, tw, strips + 1)
    for i in range(int(seconds * fps)):
        rot, trans = motion.pose(i / fps)
        frame = back.copy()
        for u0, u1 in zip(edges[:-1], edges[1:], strict=True):
            src = np.array([[u0, 0], [u1, 0], [u1, th], [u0, th]], np.float32)
            xs = (src[:, 0] - tw / 2) * k
            ys = (src[:, 1] - th / 2) * k
            zs = depth * (1 - (2 * src[:, 0] / tw - 1) ** 2) * -1.0  # the middle bulges toward the camera
            dst = _project(np.stack([xs, ys, zs], 1), rot, trans, f, centre).astype(np.float32)
            h = cv2.getPerspectiveTransform(src, dst)
            mask = np.zeros((th, tw), np.uint8)
            mask[:, int(u0):int(math.ceil(u1))] = 255
            warped = cv2.warpPerspective(tex, h, (width, height), flags=cv2.INTER_LINEAR)
            wmask = cv2.warpPerspective(mask, h, (width, height), flags=cv2.INTER_NEAREST)
            frame[wmask > 0] = warped[wmask > 0]
        frame = cv2.GaussianBlur(frame, (0, 0), blur)
        frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
        ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        yield cv2.imdecode(jpg, cv2.IMREAD_UNCHANGED) if ok else frame
