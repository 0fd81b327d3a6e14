"""Landmarks and chip alignment against dlib itself (dlib-bin as the reference) on real photos."""

from __future__ import annotations

import cv2
import dlib
import numpy as np
import pytest

from facestream.stream.config import DetectorConfig
from facestream.stream.engine.align import (
    TEMPLATE_5,
    align_faces,
    chip_transforms,
    pyramid_down,
    similarity_transform,
)
from facestream.stream.engine.detect import FaceDetector, box_iou
from facestream.stream.engine.imageio import load_image
from facestream.stream.engine.landmarks import LandmarkPredictor, to_dlib_boxes
from tests.conftest import CELEBS, EXAMPLES, GROUPS, single_person_photos

# Photos for the dlib comparisons: every single-person photo of the smaller set, a
# few of the larger one (big faces exercise dlib's pyramid), and the group photos.
PHOTOS = (
    [p for _, p in single_person_photos(EXAMPLES)]
    + [p for _, p in single_person_photos(CELEBS)][::6]
    + sorted(GROUPS.glob("*.jpg"))
)


@pytest.fixture(scope="session")
def detector() -> FaceDetector:
    return FaceDetector(DetectorConfig())


@pytest.fixture(scope="session")
def landmarker() -> LandmarkPredictor:
    return LandmarkPredictor()


@pytest.fixture(scope="session")
def photos(detector) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, MediaPipe boxes) for every comparison photo."""
    out = []
    for path in PHOTOS:
        img = load_image(path)
        out.append((img, detector.detect(img).xyxy))
    return out


def _rect(box: np.ndarray) -> dlib.rectangle:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return dlib.rectangle(x1, y1, x2 - 1, y2 - 1)


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_mapped_boxes_overlap_dlibs_own_detector(photos):
    """The fitted MediaPipe -> dlib box map puts boxes where dlib's HOG detector puts them."""
    hog = dlib.get_frontal_face_detector()
    raw, mapped = [], []
    for img, boxes in photos[::2]:
        k = min(1.0, 640 / max(img.shape[:2]))  # HOG is slow on big photos; the map is scale-free
        small = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else img
        found = hog(small, 1)
        if not len(found) or not len(boxes):
            continue
        ref = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in found], np.float32) / k
        iou_raw = box_iou(boxes, ref)
        iou_mapped = box_iou(to_dlib_boxes(boxes).astype(np.float32), ref)
        for i in range(len(boxes)):
            j = iou_raw[i].argmax()
            if iou_raw[i, j] > 0.3:  # the same face
                raw.append(iou_raw[i, j])
                mapped.append(iou_mapped[i, j])
    assert len(mapped) >= 10
    assert np.mean(mapped) > 0.7
    assert np.mean(mapped) > np.mean(raw)


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_landmarks_sit_on_the_face(photos, landmarker):
    for img, boxes in photos:
        pts = landmarker.predict(img, boxes)
        assert pts.shape == (len(boxes), 5, 2) and pts.dtype == np.float32
        for box, p in zip(boxes, pts, strict=True):
            x1, y1, x2, y2 = box
            w = x2 - x1
            assert (p[:, 0] > x1 - 0.1 * w).all() and (p[:, 0] < x2 + 0.1 * w).all()
            # the nose base is below both eyes; part 0-1 is the eye on the image's right
            assert p[4, 1] > p[:4, 1].max()
            assert p[0, 0] > p[2, 0]
    assert landmarker.predict(photos[0][0], np.zeros((0, 4), np.float32)).shape == (0, 5, 2)


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_landmarks_equal_dlibs_on_the_same_box(photos, landmarker):
    img, boxes = photos[0]
    rect = _rect(to_dlib_boxes(boxes)[0])
    shape = dlib.shape_predictor(str(landmarker.model_path))(img, rect)
    ref = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
    np.testing.assert_array_equal(landmarker.predict(img, boxes[:1])[0], ref)


def test_chips_match_dlib_get_face_chip(photos, landmarker):
    """Same dlib shape in, dlib.get_face_chip vs align_faces: far below one grey level apart."""
    diffs = []
    for img, boxes in photos:
        for box in to_dlib_boxes(boxes):
            shape = landmarker.predict_dlib(img, _rect(box))
            pts = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
            ref = np.asarray(dlib.get_face_chip(img, shape, size=150, padding=0.25))
            mine = align_faces(img, pts[None], size=150, padding=0.25)[0]
            d = np.abs(ref.astype(np.int16) - mine.astype(np.int16))
            diffs.append(d.mean())
            assert d.mean() < 1.0
    assert len(diffs) >= 25
    assert np.mean(diffs) < 0.3


def test_chips_match_dlib_for_other_sizes_and_near_the_border(photos, landmarker):
    img, boxes = photos[0]
    shape = landmarker.predict_dlib(img, _rect(to_dlib_boxes(boxes)[0]))
    pts = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
    for size, padding in [(112, 0.0), (200, 0.5), (64, 1.0)]:
        ref = np.asarray(dlib.get_face_chip(img, shape, size=size, padding=padding))
        mine = align_faces(img, pts[None], size=size, padding=padding)[0]
        assert mine.shape == (size, size, 3)
        assert np.abs(ref.astype(np.int16) - mine.astype(np.int16)).mean() < 1.0
    # a big padding reaches past the image: dlib's black border must match too
    ref = np.asarray(dlib.get_face_chip(img, shape, size=150, padding=3.0))
    mine = align_faces(img, pts[None], size=150, padding=3.0)[0]
    assert (ref == 0).all(axis=2).mean() > 0.05
    assert np.abs(ref.astype(np.int16) - mine.astype(np.int16)).mean() < 1.0


def test_chip_transforms_map_landmarks_onto_the_template(photos, landmarker):
    img, boxes = photos[-1]
    pts = landmarker.predict(img, boxes)
    m = chip_transforms(pts, size=150, padding=0.25)
    assert m.shape == (len(pts), 2, 3)
    template = (0.25 + TEMPLATE_5) / 1.5 * 150
    for mi, p in zip(m, pts, strict=True):
        on_chip = p @ mi[:, :2].T + mi[:, 2]
        assert np.abs(on_chip - template).max() < 150 * 0.08  # least squares: close, not exact
        # warping with the matrix gives the chip (no anti-aliasing pyramid: close, not equal)
        warped = cv2.warpAffine(img, mi, (150, 150), flags=cv2.INTER_LINEAR)
        chip = align_faces(img, p[None])[0]
        assert np.abs(warped.astype(np.int16) - chip.astype(np.int16)).mean() < 2


def test_similarity_transform_recovers_a_known_transform():
    angle, scale, t = 0.3, 2.5, np.array([40.0, -7.0])
    a = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = TEMPLATE_5 * 100
    got_a, got_t = similarity_transform(src, src @ a.T + t)
    np.testing.assert_allclose(got_a, a, atol=1e-9)
    np.testing.assert_allclose(got_t, t, atol=1e-9)


def test_pyramid_down_matches_dlibs_integer_arithmetic(photos):
    img = photos[0][0][:701, :64]  # more than one strip of output rows
    a = img.astype(np.int64)
    h, w = img.shape[:2]
    oc, orow = (w - 3) // 2, (h - 3) // 2
    k = [1, 4, 6, 4, 1]
    rows = sum(k[i] * a[:, i:i + 2 * oc:2] for i in range(5))
    ref = sum(k[i] * rows[i:i + 2 * orow:2] for i in range(5)) // 256
    np.testing.assert_array_equal(pyramid_down(img), ref.astype(np.uint8))
    assert pyramid_down(img[:8]).size == 0


def test_no_faces_give_no_chips(photos):
    img = photos[0][0]
    assert align_faces(img, np.zeros((0, 5, 2))).shape == (0, 150, 150, 3)
    assert chip_transforms(np.zeros((0, 5, 2))).shape == (0, 2, 3)


def test_the_corner_check_never_skips_a_sample_the_full_mask_would_blacken():
    from facestream.stream.engine.align import _corners_well_inside, _inside_mask

    rng = np.random.default_rng(0)
    size, shape = 150, (200, 180, 3)
    grid = np.mgrid[0:size, 0:size].astype(np.float64)
    agreed = 0
    for _ in range(300):
        angle, scale = rng.uniform(-np.pi, np.pi), rng.uniform(0.3, 1.3)
        c, s = scale * np.cos(angle), scale * np.sin(angle)
        m = np.array([[c, -s, rng.uniform(-60, 240)], [s, c, rng.uniform(-60, 260)]])
        full = _inside_mask(m, grid, shape).all()
        if _corners_well_inside(m, size, shape):
            assert full
        agreed += bool(full) == _corners_well_inside(m, size, shape)
    assert agreed > 250  # and it seldom defers to the full mask when it need not
    # corners exactly on the edge: the quick check defers to the full mask
    assert not _corners_well_inside(np.array([[1.0, 0, 0], [0, 1.0, 0]]), size, (size + 1, size + 1, 3))
