"""The live detection schedule on real faces pasted into 1080p frames: swept tiles, motion first, crops on tracks."""

from __future__ import annotations

import numpy as np
import pytest

from bench.scenes import Walker, background, face_sources, iter_video, paste, patch, scene
from facestream.stream.config import DetectorConfig, TrackingConfig
from facestream.stream.engine.detect import FaceDetector, box_iou
from facestream.stream.live.scheduler import DetectionScheduler, LiveDetector
from facestream.stream.live.sources import as_bgr
from facestream.stream.live.tracker import Tracker
from tests.conftest import CELEBS, single_person_photos

FPS = 30.0


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(DetectorConfig())


@pytest.fixture(scope="module")
def sources(detector):
    return face_sources(single_person_photos(CELEBS), detector)


def run(live: LiveDetector, tracker: Tracker, frames: list[np.ndarray]) -> list:
    """Each frame through the scheduler and the tracker, as the pipeline does; the faces of every frame."""
    out = []
    for i, rgb in enumerate(frames):
        expected = [t.predict(i) for t in tracker.tracks]
        faces = live.detect(rgb[..., ::-1], rgb, expected, FPS)
        tracker.update(faces, i, i / FPS)
        out.append(faces)
    return out


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_static_scene_of_64px_faces_is_found_within_a_second(detector, sources):
    """Pasted faces of 64 px in a 1920x1080 frame: after 1 s of frames every sweep has passed, and the
    faces, held by crops on their tracks since, are found (recall >= 0.95 over the next frames)."""
    rng = np.random.default_rng(11)
    found = total = false = 0
    for _ in range(2):
        sc = scene(rng, sources, 64, n=6)
        live, tracker = LiveDetector(detector, DetectorConfig()), Tracker(TrackingConfig())
        results = run(live, tracker, [sc.frame] * int(FPS + 6))
        for faces in results[int(FPS):]:
            iou = box_iou(sc.boxes, faces.xyxy) if len(faces) else np.zeros((len(sc.boxes), 1))
            found += int((iou.max(axis=1) >= 0.3).sum())
            total += len(sc.boxes)
            false += int((box_iou(faces.xyxy, sc.boxes).max(axis=1) < 0.3).sum()) if len(faces) else 0
    assert found / total >= 0.95, (found, total)
    assert false / 12 <= 0.2, false


def test_every_area_is_searched_within_the_sweep_and_change_goes_first():
    cfg = DetectorConfig()
    sched = DetectionScheduler(cfg)
    frame = np.zeros((1080, 1920, 3), np.uint8)
    period = int(cfg.sweep_seconds * FPS)
    seen: dict[int, list[int]] = {}
    for i in range(3 * period):
        for p in sched.plan(frame, [], FPS):
            seen.setdefault(sched.areas.index(p), []).append(i)
    assert len(seen) == len(sched.areas) == 16  # 15 tiles of 512 px and the whole frame
    for frames in seen.values():
        gaps = np.diff([-1, *frames])
        assert gaps.max() <= period, gaps
    # a change in one corner: the tile there is searched at once, not when its turn comes
    changed = frame.copy()
    changed[900:1000, 1750:1850] = 200
    plan = sched.plan(changed, [], FPS)
    corner = [p for p in plan if p.purpose == "tile"]
    assert any(p.view.box[2] == 1920 and p.view.box[3] == 1080 for p in corner), [p.view.box for p in corner]


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_tracked_face_keeps_its_id_while_it_shrinks_from_200_to_48px(detector, sources):
    walker = Walker(sources[0], 0.0, 2.0, (600.0, 500.0), (1300.0, 560.0), 200.0, 48.0)
    bg = background(np.random.default_rng(3), 1920, 1080)
    frames, truth = [], []
    for _, _, frame, faces in iter_video([walker], bg, FPS, 2.0):
        frames.append(frame)
        truth.append(faces[0][1] if faces else None)
    live, tracker = LiveDetector(detector, DetectorConfig()), Tracker(TrackingConfig())
    ids = []
    for faces, box in zip(run(live, tracker, frames), truth, strict=True):
        if box is None or not len(faces):
            ids.append(None)
            continue
        iou = box_iou(box[None], faces.xyxy)[0]
        ids.append(int(faces.track_id[iou.argmax()]) if iou.max() >= 0.3 else None)
    found = [i for i in ids if i is not None]
    assert len(found) >= 0.95 * len(ids), ids
    assert len(set(found)) == 1, ids


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
@pytest.mark.parametrize("size", [(64, 64), (360, 640), (2160, 3840), (4320, 7680)], ids=str)
def test_frames_of_any_size_and_a_resolution_change(detector, sources, size):
    """64x64 to 8K frames are searched, and a camera switching resolution mid-stream loses nothing."""
    h, w = size
    live, tracker = LiveDetector(detector, DetectorConfig()), Tracker(TrackingConfig())
    small = np.full((480, 640, 3), 90, np.uint8)
    img, box = patch(sources[1], min(120, w // 2))
    frame = np.full((h, w, 3), 90, np.uint8)
    truth = paste(frame, img, box, (w - img.shape[1]) // 2, (h - img.shape[0]) // 2)
    results = run(live, tracker, [small] * 3 + [frame] * 20)  # the resolution changes after three frames
    if w >= 360:
        assert box_iou(truth[None], results[-1].xyxy).max(initial=0) > 0.5
    assert all(len(f) == 0 for f in results[:3])


def test_grey_and_four_channel_frames_become_bgr():
    grey = np.zeros((10, 12), np.uint8)
    bgra = np.zeros((10, 12, 4), np.uint8)
    deep = np.zeros((10, 12, 3), np.uint16)
    for frame in (grey, bgra, deep, grey[..., None]):
        out = as_bgr(frame)
        assert out.shape == (10, 12, 3) and out.dtype == np.uint8
