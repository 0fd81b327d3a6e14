"""Liveness: a head that turns is live, a picture that turns is flagged, a still face waits; the frame
step reports it and ``require`` keeps a held-up photo out of attendance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.attacks import render_attack
from bench.scenes import face_sources
from facestream.gallery import open_store
from facestream.gallery.matcher import Matcher
from facestream.gallery.types import NewEmbedding, Person, content_hash
from facestream.stream.attendance import AttendanceMonitor, open_attendance_store
from facestream.stream.config import load_config
from facestream.stream.engine.face_mesh import FaceMesher
from facestream.stream.engine.imageio import load_image
from facestream.stream.engine.liveness import TrackLiveness
from facestream.stream.live.recognizer import Recognizer
from tests.conftest import EXAMPLES
from tests.stream.live.test_recognizer import LIN, clip_frames

LIN_PHOTO = EXAMPLES / "Lin_Manuel_Miranda" / "lin-manuel-miranda.png"


@pytest.fixture(scope="module")
def head(analyzer) -> np.ndarray:
    """A real face's mesh in 3D (468, 3), centred: the shape a turning head shows the camera."""
    rgb = load_image(LIN_PHOTO)
    faces = analyzer.detect(rgb, with_landmarks=False)
    pts = FaceMesher()(rgb, faces.xyxy[:1], faces.kps[:1]).points[0].astype(np.float64)
    return pts - pts.mean(axis=0)


def views(shape: np.ndarray, n: int, yaw_deg: float, seed: int = 0, jitter: float = 0.3) -> list[np.ndarray]:
    """``shape`` turned by a slow yaw/pitch sinusoid, seen by a camera 8 face-widths away, with landmark jitter."""
    rng = np.random.default_rng(seed)
    dist = 8 * float(np.ptp(shape[:, 0]))
    out = []
    for i in range(n):
        yaw = math.radians(yaw_deg * math.sin(2 * math.pi * i / 45))
        pitch = math.radians(0.5 * yaw_deg * math.sin(2 * math.pi * i / 60 + 1))
        ry = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
        rx = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
        p = shape @ (ry @ rx).T
        z = p[:, 2] + dist
        xy = p[:, :2] * dist / z[:, None] + 320 + rng.normal(0, jitter, (len(p), 2))
        out.append(xy)
    return out


def judge(frames: list[np.ndarray]) -> TrackLiveness:
    live = TrackLiveness()
    for f in frames:
        live.add(f)
    return live


def test_a_turning_head_is_live_a_turning_picture_is_not(head):
    assert judge(views(head, 60, 15)).verdict.state == "live"
    flat = head * np.array([1.0, 1.0, 0.0])  # the same face printed on paper
    verdict = judge(views(flat, 60, 15)).verdict
    assert verdict.state == "spoof" and verdict.score is not None and verdict.score < 0.1
    assert verdict.motion is not None and verdict.motion >= 0.02


def test_a_still_face_waits_and_a_blink_decides(head):
    still = views(head, 60, 0)
    verdict = judge(still).verdict
    assert verdict.state == "unknown" and "motion" in verdict.reason
    eyes = [159, 145, 158, 153, 386, 374, 385, 380]
    blinking = [f.copy() for f in still]
    for i in (40, 41, 42):  # the lids meet for three frames
        for upper, lower in zip(eyes[::2], eyes[1::2], strict=True):
            mid = (blinking[i][upper] + blinking[i][lower]) / 2
            blinking[i][upper] = blinking[i][lower] = mid
    live = judge(blinking)
    assert live.verdict.state == "live" and live.blinks == 1
    assert judge(views(head, 10, 15)).verdict.state == "unknown"  # too few frames for any verdict


@pytest.fixture
def lin_matcher(analyzer, tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/gallery.db")
    faces, _ = analyzer.largest_face(load_image(LIN_PHOTO))
    person, _ = store.enroll(LIN, [NewEmbedding(faces.embedding[0], analyzer.model_id,
                                                content_hash(LIN_PHOTO.read_bytes()))])
    with Matcher(store, analyzer.model_id, analyzer.threshold, tail=analyzer.impostor_tail, watch=False) as m:
        yield m, person.id
    store.close()


def run(recognizer: Recognizer, frames, analyzer, monitors=()):
    steps, events = [], []
    for i, rgb in frames:
        step = recognizer.step(i, 1_800_000_000.0 + i / 30, rgb, analyzer.detect(rgb, with_landmarks=False))
        for mon in monitors:
            mon.observe("cam", 1_800_000_000.0 + i / 30, step.faces)
        steps.append(step)
        events += step.events
    return steps, events + recognizer.end(10_000, 1_800_001_000.0)


@pytest.mark.slow
def test_the_real_clip_stays_live(analyzer, lin_matcher):
    matcher, _ = lin_matcher
    steps, events = run(Recognizer("cam", load_config(env={}), analyzer, matcher), clip_frames(every=1, limit=200),
                        analyzer)
    assert "spoof_suspected" not in {e.event for e in events}
    lins = [e.track["liveness"] for e in events if e.event == "track_ended" and e.track["name"] == LIN]
    assert lins and all(v is not None and v["state"] == "live" for v in lins)
    named = [f for s in steps for f in s.faces.to_json() if f.get("name") == LIN]
    assert named[-1]["liveness_state"] == "live" and named[-1]["liveness"] > 0.5


@pytest.mark.slow
def test_a_moved_photo_is_flagged_and_require_keeps_it_out_of_attendance(analyzer, lin_matcher, tmp_path):
    matcher, lin_id = lin_matcher
    source = face_sources([(LIN, LIN_PHOTO)], analyzer.detector)[0]
    clip = list(enumerate(render_attack(source, "print", np.random.default_rng(7), seconds=3.0)))
    people = lambda: [Person(lin_id, LIN, {})]  # noqa: E731
    strict = AttendanceMonitor(open_attendance_store(f"sqlite:///{tmp_path}/strict.db"), people=people,
                               clock=lambda: 1_800_000_000.0, require_live=True)
    strict.start_session("strict", names=[LIN], cameras=["cam"])
    lenient = AttendanceMonitor(open_attendance_store(f"sqlite:///{tmp_path}/lenient.db"), people=people,
                                clock=lambda: 1_800_000_000.0)
    lenient.start_session("lenient", names=[LIN], cameras=["cam"])
    config = load_config(overrides=["liveness.mode=require"], env={})
    steps, events = run(Recognizer("cam", config, analyzer, matcher), clip, analyzer, (strict, lenient))
    spoofs = [e for e in events if e.event == "spoof_suspected"]
    assert len(spoofs) == 1 and spoofs[0].track["name"] == LIN  # named, and flagged once
    assert spoofs[0].frame_index <= 60  # within 2 s of the photo appearing
    assert spoofs[0].to_json()["liveness"]["state"] == "spoof"
    assert steps[-1].faces.liveness_state == ["spoof"]
    assert [r.person_id for r in lenient.store.records("lenient")] == [lin_id]  # what report mode would mark
    assert strict.store.records("strict") == []  # require: the picture is never marked present


def test_liveness_off_measures_nothing(analyzer, lin_matcher):
    matcher, _ = lin_matcher
    rec = Recognizer("cam", load_config(overrides=["liveness.mode=off"], env={}), analyzer, matcher)
    steps, _ = run(rec, clip_frames(every=1, limit=40), analyzer)
    assert all(s.faces.liveness_state is None for s in steps)
    assert all(t.liveness is None for s in steps for t in s.tracks)


def test_a_wrong_mode_is_one_clear_error():
    from facestream.errors import FacestreamError

    with pytest.raises(FacestreamError, match="liveness.mode"):
        load_config(overrides=["liveness.mode=strict"], env={})
