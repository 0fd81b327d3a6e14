"""BlazeFace ported from MediaPipe's .tflite: the same faces as MediaPipe's own graph, batched on any runtime.

Parity, for both ranges: every face one of them finds, the other finds too, with boxes
overlapping by IoU >= 0.9 (mean >= 0.95) and scores within 0.02. Both run at
MediaPipe's own threshold for the range (0.5 short, 0.6 full: its full-range graph
keeps that, whatever ``min_detection_confidence`` asks), and a face within 0.02 of it
may fall on either side in either, so only faces 0.02 above it must have a partner.
Checked on every shared photo (MediaPipe with its own resizing of the original
image, the port fed the same way) and on frames of the Hamilton clip (both fed the
same views).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.scenes import closeup, face_sources, scene
from facestream.stream.config import DetectorConfig
from facestream.stream.engine.blazeface import (
    FULL,
    RANGES,
    SHORT,
    Letterbox,
    RawFaces,
    letterbox,
    ssd_anchors,
    weighted_nms,
)
from facestream.stream.engine.detect import FaceDetector, View, box_iou
from facestream.stream.engine.imageio import load_image
from facestream.stream.engine.model_store import get_model
from facestream.stream.engine.runtimes import create_runtime
from tests.conftest import CELEBS, DATA, EXAMPLES, HAMILTON, single_person_photos

TOLERANCE = 0.02


def _ported(kind: str) -> FaceDetector:
    """The port at MediaPipe's threshold, fed as MediaPipe feeds its model (bilinear letterbox of the image)."""
    return FaceDetector(DetectorConfig(engine="onnxruntime", resample="linear", min_score=RANGES[kind].min_score))


@pytest.fixture(scope="module")
def graphs():
    """MediaPipe's own face detection graphs, the reference (fed the original images, as its users do)."""
    import mediapipe as mp

    out = {kind: mp.solutions.face_detection.FaceDetection(model_selection=0 if kind == "short" else 1,
                                                           min_detection_confidence=RANGES[kind].min_score)
           for kind in RANGES}
    yield out
    for g in out.values():
        g.close()


def _mediapipe(graph, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = rgb.shape[:2]
    dets = graph.process(rgb).detections or []
    boxes = [(d.location_data.relative_bounding_box.xmin * w, d.location_data.relative_bounding_box.ymin * h,
              (d.location_data.relative_bounding_box.xmin + d.location_data.relative_bounding_box.width) * w,
              (d.location_data.relative_bounding_box.ymin + d.location_data.relative_bounding_box.height) * h)
             for d in dets]
    return np.array(boxes, np.float32).reshape(-1, 4), np.array([d.score[0] for d in dets], np.float32)


def _photos() -> list[tuple[str, np.ndarray]]:
    return [(p.name, load_image(p)) for p in sorted(DATA.rglob("*.jpg")) + sorted(DATA.rglob("*.png"))]


def _clip_frames(every: int = 10) -> list[tuple[str, np.ndarray]]:
    out = []
    cap = cv2.VideoCapture(str(HAMILTON))
    i = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            return out
        if i % every == 0:
            out.append((f"hamilton frame {i}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        i += 1


def _compare(pairs: list[tuple[str, tuple[np.ndarray, np.ndarray], RawFaces]], threshold: float) -> None:
    """Same faces (a partner for every face at ``threshold + TOLERANCE`` or more), IoU >= 0.9 each
    (mean >= 0.95), scores within TOLERANCE."""
    ious, diffs, wrong = [], [], []
    for name, (ref_boxes, ref_scores), ours in pairs:
        for a, sa, b, sb, who in ((ref_boxes, ref_scores, ours.xyxy, ours.score, "the port"),
                                  (ours.xyxy, ours.score, ref_boxes, ref_scores, "MediaPipe")):
            for box, score in zip(a, sa, strict=True):
                if score < threshold + TOLERANCE:
                    continue
                iou = box_iou(box[None], b)[0] if len(b) else np.zeros(0)
                if not len(iou) or iou.max() < 0.5:
                    wrong.append(f"{name}: a face at {score:.3f} that {who} does not find")
                    continue
                j = int(iou.argmax())
                ious.append(float(iou[j]))
                diffs.append(abs(float(score) - float(sb[j])))
    assert not wrong, wrong
    assert len(ious) > 100
    assert min(ious) >= 0.9 and np.mean(ious) >= 0.95, (min(ious), np.mean(ious))
    assert max(diffs) <= TOLERANCE, max(diffs)


def _port(ported: FaceDetector, rgb: np.ndarray, kind: str) -> RawFaces:
    """The port on the whole image, in the model's own box convention (as MediaPipe reports it)."""
    h, w = rgb.shape[:2]
    (ours,) = ported.run_views(rgb, [View(kind, (0.0, 0.0, float(w), float(h)))])
    return RawFaces(_undo(ours.xyxy, *SHORT.to_full), ours.score, ours.kps) if kind == "short" else ours


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
@pytest.mark.parametrize("kind", ["full", "short"])
def test_the_port_finds_what_mediapipe_finds_in_the_shared_photos(graphs, kind):
    """MediaPipe's graph on each original photo, with its own resizing, against the port fed likewise."""
    ported = _ported(kind)
    _compare([(name, _mediapipe(graphs[kind], rgb), _port(ported, rgb, kind)) for name, rgb in _photos()],
             RANGES[kind].min_score)


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
@pytest.mark.parametrize("kind", ["full", "short"])
def test_the_port_and_mediapipe_agree_on_the_same_views_of_the_clip(kind):
    """The reference engine (MediaPipe's graph) and the port fed the same letterboxed views of the clip's
    frames: the network, anchors, decoding and blending are checked alone."""
    threshold = RANGES[kind].min_score
    port = FaceDetector(DetectorConfig(engine="onnxruntime", min_score=threshold))
    reference = FaceDetector(DetectorConfig(engine="mediapipe", min_score=threshold))
    pairs = []
    for name, rgb in _clip_frames(5):
        h, w = rgb.shape[:2]
        views = [View(kind, (0.0, 0.0, float(w), float(h))), View(kind, (0.0, 0.0, w / 2 + 40, float(h))),
                 View(kind, (w / 2 - 40, 0.0, float(w), float(h)))]
        for v, ref, ours in zip(views, reference.run_views(rgb, views), port.run_views(rgb, views), strict=True):
            if kind == "short":  # compare in the model's own box convention
                ref = RawFaces(_undo(ref.xyxy, *SHORT.to_full), ref.score, ref.kps)
                ours = RawFaces(_undo(ours.xyxy, *SHORT.to_full), ours.score, ours.kps)
            pairs.append((f"{name} {v.box}", (ref.xyxy, ref.score), ours))
    _compare(pairs, threshold)


def _undo(xyxy: np.ndarray, dx: float, dy: float, k: float) -> np.ndarray:
    """Undo the short range's mapping to the full range's box convention."""
    w = (xyxy[:, 2] - xyxy[:, 0]) / k
    h = (xyxy[:, 3] - xyxy[:, 1]) / k
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2 - dx * w
    cy = (xyxy[:, 1] + xyxy[:, 3]) / 2 - dy * w
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def test_mediapipe_is_the_reference_engine_on_the_same_views():
    """detector.engine=mediapipe runs MediaPipe's graph on the port's views: the same faces."""
    img = load_image(EXAMPLES / "_nonsingle" / "_group" / "obama_and_biden.jpg")
    port = FaceDetector(DetectorConfig(engine="onnxruntime")).detect(img)
    ref = FaceDetector(DetectorConfig(engine="mediapipe")).detect(img)
    assert len(port) == len(ref) == 3
    iou = box_iou(ref.xyxy, port.xyxy).max(axis=1)
    assert iou.min() > 0.95 and np.abs(np.sort(ref.score) - np.sort(port.score)).max() < 0.01


def test_torch_and_onnxruntime_run_the_same_detector():
    spec = get_model("blazeface-full")
    ort = create_runtime(spec, DetectorConfig(engine="onnxruntime", device="cpu"))
    torch = create_runtime(spec, DetectorConfig(engine="torch", device="cpu"))
    x = np.random.default_rng(0).integers(0, 256, (3, 192, 192, 3), dtype=np.uint8)
    np.testing.assert_allclose(ort.run(x), torch.run(x), atol=2e-3)
    assert spec.task == "detect" and spec.output_dim == FULL.num_anchors * 17


def test_anchor_layouts_match_mediapipe():
    short, full = SHORT.anchors(), FULL.anchors()
    assert len(short) == 896 and len(full) == 2304
    # short range: 16x16 cells with 2 anchors, then 8x8 cells with 6; row-major, the anchors of a cell together
    assert np.allclose(short[0], [0.5 / 16, 0.5 / 16]) and np.allclose(short[1], short[0])
    assert np.allclose(short[512], [0.5 / 8, 0.5 / 8]) and np.allclose(short[512:518], short[512])
    assert np.allclose(full[1], [1.5 / 48, 0.5 / 48])
    assert np.array_equal(ssd_anchors(128, (8, 16, 16, 16), 1.0), short)


def test_weighted_nms_blends_overlapping_faces_and_keeps_the_best_score():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    kps = np.zeros((3, 6, 2), np.float32)
    kps[1] = 12.0
    out = weighted_nms(RawFaces(boxes, scores, kps))
    assert len(out) == 2 and np.allclose(out.score, [0.9, 0.8])
    assert np.allclose(out.xyxy[0], [0.5, 0, 10.5, 10])  # (0.9*0 + 0.3*2) / 1.2 = 0.5
    assert np.allclose(out.kps[0], 3.0)


def test_letterbox_maps_views_back_to_the_frame():
    img = np.zeros((300, 500, 3), np.uint8)
    img[100:140, 200:240] = 255
    for box in ((0, 0, 500, 300), (150, 50, 350, 250), (-50, -50, 550, 350)):
        tensor, lb = letterbox(img, box, 128)
        ys, xs = np.nonzero(tensor[..., 0] > 128)
        corner = lb.to_frame(np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], np.float32))
        np.testing.assert_allclose(corner, [[200, 100], [240, 140]], atol=500 / 128 + 1)
    assert isinstance(lb, Letterbox)


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_close_ups_of_the_shared_photos_are_found():
    """A face filling half to all of the picture (a selfie, a kiosk) is found, once."""
    detector = FaceDetector(DetectorConfig())
    items = single_person_photos(EXAMPLES) + single_person_photos(CELEBS)
    sources = face_sources(items, detector)
    assert len(sources) >= 70
    h_w = [s.rgb.shape[:2] for s in sources]
    whole = [s for s, (h, w) in zip(sources, h_w, strict=True)  # faces cut by the photo's edge stay cut
             if s.box[0] > 1 and s.box[1] > 1 and s.box[2] < w - 1 and s.box[3] < h - 1]
    assert len(whole) >= 65
    missed = []
    for src in whole:
        for fill in (0.5, 0.75, 1.0):
            img, truth = closeup(src, fill)
            faces = detector.detect(img)
            big = faces.xyxy[faces.width >= 0.4 * img.shape[1]] if len(faces) else faces.xyxy
            if not len(big) or box_iou(truth[None], big).max() < 0.3:
                missed.append(f"{src.path.name} at {fill:.0%}")
    assert not missed, missed


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_photo_mode_finds_small_faces_in_one_call():
    """Pasted faces of 64 px in a 1920x1080 frame: found in one detect() call (tiles), with no false faces."""
    detector = FaceDetector(DetectorConfig())
    sources = face_sources(single_person_photos(CELEBS), detector)
    rng = np.random.default_rng(7)
    found = total = false = 0
    for _ in range(3):
        sc = scene(rng, sources, 64, n=6)
        faces = detector.detect(sc.frame)
        iou = box_iou(sc.boxes, faces.xyxy) if len(faces) else np.zeros((len(sc.boxes), 1))
        found += int((iou.max(axis=1) >= 0.3).sum())
        total += len(sc.boxes)
        false += int((box_iou(faces.xyxy, sc.boxes).max(axis=1) < 0.3).sum()) if len(faces) else 0
    assert found / total >= 0.95 and false <= 1, (found, total, false)
