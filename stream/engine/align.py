"""Face chips exactly as dlib cuts them: ``get_face_chip_details`` + ``extract_image_chip``.

The dlib ResNet embedder was trained on dlib's chips, and its descriptors move by
a visible fraction of the decision threshold when the chip shifts by a pixel, so
this module reproduces dlib's recipe step by step rather than "a similar warp":

1. the 5-point template of ``get_face_chip_details`` (dlib/image_transforms/
   interpolation.h), scaled by ``(padding + p) / (2 * padding + 1) * size``;
2. a least-squares similarity transform from the template to the landmarks
   (Umeyama, as dlib's ``find_similarity_transform``), turned into dlib's
   ``chip_details``: a rectangle (``centered_drect``) and an angle;
3. ``extract_image_chips``: when the chip is much smaller than its region, a
   ``pyramid_down<2>`` (5-tap 1-4-6-4-1 filter, integer arithmetic) of the region's
   bounding box, then bilinear sampling at the right level; samples whose 2x2
   neighbourhood leaves the source are black; values are truncated, not rounded.

Sampling uses ``cv2.warpAffine`` on a float32 copy of the source, then dlib's
truncation and out-of-bounds rule.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# dlib's 5-point chip template (get_face_chip_details, num_parts() == 5), in units of
# the unpadded chip: part 0-1 outer/inner corner of the eye on the image's right,
# 2-3 of the eye on the image's left, 4 the base of the nose.
TEMPLATE_5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ],
    np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity (A, t) with ``dst ~ A @ src + t`` (Umeyama 1991, eq. 34-43, as dlib)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mean_src, mean_dst = src.mean(0), dst.mean(0)
    sigma_src = ((src - mean_src) ** 2).sum(1).mean()
    cov = (dst - mean_dst).T @ (src - mean_src) / len(src)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(2)
    det = np.linalg.det(cov)
    if det < 0 or (det == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        if d[1] < d[0]:
            s[1, 1] = -1
        else:
            s[0, 0] = -1
    r = u @ s @ vt
    c = (d * np.diag(s)).sum() / sigma_src if sigma_src != 0 else 1.0
    a = c * r
    return a, mean_dst - a @ mean_src


def _chip_rect(points: np.ndarray, size: int, padding: float) -> tuple[np.ndarray, float]:
    """dlib's ``chip_details`` for one face: rect (l, t, r, b) as drectangle, and angle."""
    template = (padding + TEMPLATE_5) / (2 * padding + 1) * size
    a, t = similarity_transform(template, points)
    p = a @ np.array([1.0, 0.0])
    angle = math.atan2(p[1], p[0])
    scale = math.hypot(p[0], p[1])
    center = a @ np.array([size / 2.0, size / 2.0]) + t
    half = (size * scale - 1) / 2  # centered_drect subtracts one from width and height
    return np.array([center[0] - half, center[1] - half, center[0] + half, center[1] + half]), angle


def _rotate(center: np.ndarray, pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    d = pts - center
    return np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], axis=1) + center


def _corners(rect: np.ndarray, angle: float) -> np.ndarray:
    """tl, tr, bl, br corners of a drectangle rotated about its centre."""
    x0, y0, x1, y1 = rect
    pts = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)
    return _rotate(np.array([(x0 + x1) / 2, (y0 + y1) / 2]), pts, angle)


def _affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 affine matrix mapping three src points onto three dst points."""
    src = np.asarray(src[:3], np.float64)
    dst = np.asarray(dst[:3], np.float64)
    # Closed form (edges from point 0): a 3x3 LAPACK solve costs more in call overhead.
    (a, b), (c, d) = (src[1] - src[0]), (src[2] - src[0])
    det = a * d - b * c
    inv = np.array([[d, -c], [-b, a]]) / det  # inverse of [[a, c], [b, d]]
    lin = np.column_stack([dst[1] - dst[0], dst[2] - dst[0]]) @ inv
    return np.hstack([lin, (dst[0] - lin @ src[0])[:, None]])


def _area(rect: np.ndarray) -> float:
    x0, y0, x1, y1 = rect
    if x0 > x1 or y0 > y1:
        return 0.0
    return (x1 - x0 + 1) * (y1 - y0 + 1)


def _rect_down(rect: np.ndarray) -> np.ndarray:
    """dlib pyramid_down<2>::rect_down: corners p/2 - (1.25, 0.75)."""
    return rect / 2.0 - np.array([1.25, 0.75, 1.25, 0.75])


def pyramid_down(img: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_down<2>`` on an RGB uint8 image: 1-4-6-4-1 filter, every other pixel, truncating /256.

    dlib sums rows 2r..2r+4 and columns 2c..2c+4 in integers; a separable float32
    filter centred on (2r+2, 2c+2) gives the same sums exactly (they stay below
    2**24) in a fraction of the time of numpy slicing.
    """
    h, w = img.shape[:2]
    if h <= 8 or w <= 8:
        return np.zeros((0, 0, 3), np.uint8)
    oc, orow = (w - 3) // 2, (h - 3) // 2
    out = np.empty((orow, oc, 3), np.uint8)
    # In strips of output rows, so a face filling a 10000 px photo needs tens of MB, not GB.
    for r0 in range(0, orow, _STRIP):
        r1 = min(orow, r0 + _STRIP)
        part = img[2 * r0: 2 * r1 + 3]  # input rows 2*r .. 2*r+4 for every output row r
        sums = cv2.sepFilter2D(part, cv2.CV_32F, _KERNEL, _KERNEL, borderType=cv2.BORDER_CONSTANT)
        out[r0:r1] = sums[2:2 + 2 * (r1 - r0):2, 2:2 + 2 * oc:2] * (1.0 / 256.0)
    return out


# Bump when a change alters the chips this module makes: cached training chips are keyed by it.
ALIGN_VERSION = 1

_KERNEL = np.array([1, 4, 6, 4, 1], np.float32)
_STRIP = 256


def chip_transforms(landmarks: np.ndarray, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """Affine matrices (n, 2, 3) mapping image pixels to chip pixels (dlib's ``get_mapping_to_chip``).

    ``cv2.warpAffine(rgb, m, (size, size))`` with one of these gives the chip up to
    dlib's anti-aliasing pyramid; use it to move points (boxes, landmarks) between
    image and chip, or to warp augmented images the same way the runtime does.
    """
    landmarks = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    out = np.zeros((len(landmarks), 2, 3), np.float64)
    chip = np.array([[0, 0], [size - 1, 0], [0, size - 1]], np.float64)
    for i, pts in enumerate(landmarks):
        rect, angle = _chip_rect(pts, size, padding)
        out[i] = _affine(_corners(rect, angle)[:3], chip)
    return out


def _extract(rgb: np.ndarray, rect: np.ndarray, angle: float, size: int) -> np.ndarray:
    """dlib's ``extract_image_chips`` for a single chip (size x size)."""
    h, w = rgb.shape[:2]
    n_px = size * size
    # How much border the chip's pyramid levels need around it.
    grow, r = 2.0, _rect_down(rect)
    while _area(r) > n_px:
        r = _rect_down(r)
        grow = grow * 2 + 2
    corners = _corners(rect, angle)
    bl = max(corners[:, 0].min() - grow, 0.0)
    bt = max(corners[:, 1].min() - grow, 0.0)
    br = min(corners[:, 0].max() + grow, w - 1.0)
    bb = min(corners[:, 1].max() + grow, h - 1.0)
    # drectangle -> rectangle rounds each side; an empty box (chip entirely outside) gives a black chip.
    x0, y0, x1, y1 = (math.floor(v + 0.5) for v in (bl, bt, br, bb))
    if x1 < x0 or y1 < y0:
        return np.zeros((size, size, 3), np.uint8)
    src = rgb[y0:y1 + 1, x0:x1 + 1]
    rect = rect - np.array([x0, y0, x0, y0], np.float64)
    level = -1
    while _area(_rect_down(rect)) > n_px:
        level += 1
        rect = _rect_down(rect)
    for _ in range(level + 1):
        src = pyramid_down(src)
    if src.size == 0:
        return np.zeros((size, size, 3), np.uint8)
    chip_pts = np.array([[0, 0], [size - 1, 0], [0, size - 1]], np.float64)
    m = _affine(chip_pts, _corners(rect, angle)[[0, 1, 2]])  # chip -> source
    out = cv2.warpAffine(
        src.astype(np.float32), m, (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0),
    )
    # dlib: a sample whose 2x2 neighbourhood is not inside the source is black.
    if not _corners_well_inside(m, size, src.shape):
        out[~_inside_mask(m, np.mgrid[0:size, 0:size].astype(np.float64), src.shape)] = 0
    # dlib assigns double -> uint8 with static_cast: truncation.
    return np.clip(np.floor(out), 0, 255).astype(np.uint8)


def _inside_mask(m: np.ndarray, grid: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Which chip samples (``grid`` = rows, cols) have their 2x2 source neighbourhood inside ``shape``."""
    ys, xs = grid
    fx = np.floor(m[0, 0] * xs + m[0, 1] * ys + m[0, 2])
    fy = np.floor(m[1, 0] * xs + m[1, 1] * ys + m[1, 2])
    return (fx >= 0) & (fy >= 0) & (fx + 1 < shape[1]) & (fy + 1 < shape[0])


# Rounding in the per-sample products is ~1e-12 px; corners this far inside keep every sample inside.
_INSIDE_MARGIN = 1e-6


def _corners_well_inside(m: np.ndarray, size: int, shape: tuple[int, ...]) -> bool:
    """Whether every chip sample is inside the source, judged from the 4 corner samples.

    The map is affine and the inside region is convex, so the corners bound all
    samples; the margin makes the answer match the per-sample mask bit for bit.
    """
    ys, xs = np.array([[0, 0, size - 1, size - 1], [0, size - 1, 0, size - 1]], np.float64)
    sx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    sy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    lo, hi_x, hi_y = _INSIDE_MARGIN, shape[1] - 1 - _INSIDE_MARGIN, shape[0] - 1 - _INSIDE_MARGIN
    return bool((sx >= lo).all() and (sy >= lo).all() and (sx <= hi_x).all() and (sy <= hi_y).all())


def align_faces(rgb: np.ndarray, landmarks: np.ndarray, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """Aligned chips (n, size, size, 3) uint8 RGB, as ``dlib.get_face_chip(img, shape, size, padding)``.

    Args:
        rgb: (H, W, 3) uint8 RGB image.
        landmarks: (n, 5, 2) dlib 5-point landmarks in pixels.
        size: chip side in pixels (150 for the dlib ResNet).
        padding: border around the face, as a fraction of the template (dlib's default for the ResNet: 0.25).
    """
    landmarks = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    chips = np.zeros((len(landmarks), size, size, 3), np.uint8)
    for i, pts in enumerate(landmarks):
        rect, angle = _chip_rect(pts, size, padding)
        chips[i] = _extract(rgb, rect, angle, size)
    return chips
