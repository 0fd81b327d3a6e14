"""Delete means gone, everywhere, by one path; snapshots are a choice with a retention rule; strangers'
memory is bounded; secrets never show (issue 13, items 6, 8, 12, 13). Real files, real Redis, real runs."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from facestream.errors import FacestreamError, redact
from facestream.gallery import open_store
from facestream.gallery.types import NewEmbedding, content_hash
from facestream.stream.attendance import AttendanceMonitor, create_session, open_attendance_store
from facestream.stream.attendance.erase import erase_person
from facestream.stream.config import AttendanceConfig, SourceConfig, load_config
from facestream.stream.engine.imageio import load_image
from tests.conftest import EXAMPLES, HAMILTON, ROOT

NAME = "Zebulon Quixote-Unique"


def _enrol_with_traces(url: str, analyzer) -> tuple[bytes, bytes, bytes]:
    """A person with a photo, a chip, a negative and an attendance record with a snapshot; the bytes to look for."""
    photo = EXAMPLES / "Joe_Biden" / "biden.jpg"
    rgb = load_image(photo)
    faces, _ = analyzer.largest_face(rgb)
    chip = analyzer.chips(rgb, faces)[0]
    from facestream.stream.recognition.enroll import encode_jpeg

    chip_jpeg = encode_jpeg(chip)
    vector = faces.embedding[0].astype(np.float32)
    with open_store(url) as g:
        person, _ = g.enroll(NAME, [NewEmbedding(vector, analyzer.model_id, content_hash(photo.read_bytes()),
                                                 chip_jpeg, "biden.jpg")], {"student": "S-998877"})
        other = NewEmbedding(np.roll(vector, 3), analyzer.model_id, "neg1", b"\xff\xd8NEGATIVE-CHIP-BYTES", "cam",
                             negative=True)
        g.add_negative(person.id, other)
    att = open_attendance_store(url)
    create_session(att, lambda: [person], "morning", names=[NAME])
    snapshot = b"\xff\xd8SNAPSHOT-OF-ZEBULON" + bytes(range(256)) * 8
    att.upsert("morning", person.id, NAME, True, time.time(), time.time(), "cam0", 0.97, snapshot)
    att.close()
    return chip_jpeg, vector.tobytes(), snapshot


def test_erase_leaves_no_byte_of_the_person_in_the_sqlite_files(tmp_path, analyzer):
    url = f"sqlite:///{tmp_path}/gallery.db"
    chip, vector, snapshot = _enrol_with_traces(url, analyzer)
    files = lambda: [p for p in tmp_path.iterdir() if p.name.startswith("gallery.db")]  # noqa: E731
    assert any(NAME.encode() in p.read_bytes() for p in files())  # it is there before
    out = subprocess.run([sys.executable, "-m", "facestream", "people", "delete", NAME, "--gallery", url],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0 and "attendance in 1 session(s)" in out.stdout, out.stderr
    for path in files():
        data = path.read_bytes()
        for what, needle in (("name", NAME.encode()), ("metadata", b"S-998877"), ("chip", chip[200:264]),
                             ("embedding", vector[:64]), ("snapshot", snapshot[20:120]),
                             ("negative", b"NEGATIVE-CHIP-BYTES")):
            assert needle not in data, f"the {what} is still in {path.name}"


def test_erase_is_retryable_when_a_store_fails_half_way(tmp_path, analyzer):
    url = f"sqlite:///{tmp_path}/gallery.db"
    _enrol_with_traces(url, analyzer)
    gallery = open_store(url)
    attendance = open_attendance_store(url)

    class FailingOnce:  # the real store, failing the first time (a full disk, a lost connection)
        calls = 0

        def forget_person(self, person_id, name=""):
            FailingOnce.calls += 1
            if FailingOnce.calls == 1:
                raise FacestreamError("Attendance database error (disk I/O error).", "Retry.")
            return attendance.forget_person(person_id, name)

    with pytest.raises(FacestreamError, match="disk I/O"):
        erase_person(gallery, NAME, FailingOnce())
    assert gallery.find_person(NAME) is not None  # nothing half-deleted: the name still finds them
    gone = erase_person(gallery, NAME, FailingOnce())
    assert gone.sessions == 1 and gallery.find_person(NAME) is None and attendance.records("morning") == []
    assert "Zebulon" not in str(attendance.get_session("morning").to_dict())  # the roster place too
    gallery.close()
    attendance.close()


def test_erase_on_redis_removes_every_key_of_the_person(redis_url, analyzer):
    import redis

    _enrol_with_traces(redis_url, analyzer)
    r = redis.Redis.from_url(redis_url)
    with open_store(redis_url) as g:
        pid = g.get_person(NAME).id
        # the cluster's live stream: a frame naming them, with its JPEG, and someone else's frame
        named = {"m": f'{{"type":"frame","faces":[{{"person_id":"{pid}","name":"{NAME}"}}]}}', "s": "cam0",
                 "j": "JPEG-OF-THE-FACE"}
        r.xadd("facestream:live", named)
        other = r.xadd("facestream:live", {"m": '{"type":"frame","faces":[]}', "s": "cam0"})
        r.sadd("facestream:frames", "cam0")  # and cam0's own frame stream, where workers put frames
        r.xadd("facestream:frames:cam0", named)
        other_frame = r.xadd("facestream:frames:cam0", {"m": '{"type":"frame","faces":[]}', "s": "cam0"})
        erase_person(g, NAME)
    assert [eid for eid, _ in r.xrange("facestream:live")] == [other]  # theirs gone, the rest kept
    assert [eid for eid, _ in r.xrange("facestream:frames:cam0")] == [other_frame]
    for key in r.scan_iter(match="*"):
        kind = r.type(key)
        blob = repr(r.dump(key)) if kind else ""
        assert pid.encode() not in (r.dump(key) or b"") and NAME.encode() not in (r.dump(key) or b""), (key, blob[:80])


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_deleted_person_is_not_recreated_by_a_live_track(tmp_path, analyzer):
    """Lin is named on the clip and recorded; deleted mid-run, his track forgets him: no frame after carries his
    id, and attendance gets no new record of him."""
    from facestream.gallery.matcher import Matcher
    from facestream.stream.live.pipeline import Pipeline

    url = f"sqlite:///{tmp_path}/gallery.db"
    photo = EXAMPLES / "Lin_Manuel_Miranda" / "lin-manuel-miranda.png"
    faces, _ = analyzer.largest_face(load_image(photo))
    store = open_store(url)
    lin, _ = store.enroll("Lin", [NewEmbedding(faces.embedding[0], analyzer.model_id,
                                               content_hash(photo.read_bytes()))])
    att = open_attendance_store(url)
    monitor = AttendanceMonitor(att, AttendanceConfig(min_frames=2), people=lambda: store.list_people(),
                                threshold=analyzer.threshold)
    monitor.start_session("show", names=["Lin"])
    matcher = Matcher(store, analyzer.model_id, analyzer.threshold, watch=False)
    config = load_config(overrides=["server.stats_every=0"], env={})
    pipeline = Pipeline(config, [SourceConfig(url=str(HAMILTON), id="cam0")], analyzer=analyzer, matcher=matcher,
                        wait_for_embeddings=True)
    state: dict = {}

    def listener(result, rgb):
        ids = set(result.faces.identity or [])
        if "deleted" in state:
            state.setdefault("after", []).append(ids)
        elif lin.id in ids and result.frame_index >= 110:
            erase_person(store, "Lin", att)
            state["deleted"] = result.frame_index

    pipeline.add_listener(listener)
    pipeline.add_listener(monitor.on_result)
    with pipeline:
        assert pipeline.wait(300)
    assert "deleted" in state and state["after"], "Lin was never named"
    assert all(lin.id not in ids for ids in state["after"])
    assert [r.person_id for r in att.records("show")] == []
    matcher.close()
    store.close()
    att.close()


def test_snapshots_are_a_choice_and_old_ones_are_purged(tmp_path):
    from facestream.gallery.types import Person
    from facestream.stream.engine.faces import Faces

    assert AttendanceConfig().keep_snapshots is False and AttendanceConfig().retention_days == 30
    url = f"sqlite:///{tmp_path}/g.db"
    people = [Person("p1", "Ann", {})]
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)
    for keep in (False, True):
        att = open_attendance_store(url)
        clock = [1000.0 + 10 * keep]
        mon = AttendanceMonitor(att, AttendanceConfig(min_frames=2, keep_snapshots=keep), people=lambda: people,
                                threshold=0.5, clock=lambda clock=clock: clock[0])
        mon.start_session(f"s{keep}", names=["Ann"])
        for _ in range(4):
            clock[0] += 0.1
            faces = Faces(xyxy=[[10, 10, 90, 90]], score=[0.9], track_id=np.array([1]), identity=["p1"],
                          name=["Ann"], similarity=np.array([0.9], np.float32))
            mon.observe("cam0", clock[0], faces, frame)
        assert (att.snapshot(f"s{keep}", "p1") is not None) is keep
        mon.stop_session(f"s{keep}")
        att.close()
    # retention: a session that ended 40 days ago loses its snapshots at the next refresh
    att = open_attendance_store(url)
    att.set_end("sTrue", 1001.0)
    now = 1001.0 + 40 * 86400
    mon = AttendanceMonitor(att, AttendanceConfig(retention_days=30), people=lambda: people, clock=lambda: now)
    mon.refresh(force=True)
    assert att.snapshot("sTrue", "p1") is None and att.records("sTrue")[0].person_id == "p1"
    att.close()


def test_retention_reaches_open_sessions_and_erased_people_leave_the_dashboard_story(store_url):
    """A session with no end keeps snapshots only of faces seen within the retention; a person erased is
    gone from ``hello.attendance_recent`` at once (issue 22, item 7)."""
    from facestream.gallery.types import Person
    from facestream.stream.engine.faces import Faces

    people = [Person("p1", "Ann", {}), Person("p2", "Bob", {})]
    att = open_attendance_store(store_url)
    clock = [1000.0]
    mon = AttendanceMonitor(att, AttendanceConfig(min_frames=2, keep_snapshots=True, retention_days=30),
                            people=lambda: people, threshold=0.5, clock=lambda: clock[0])
    mon.start_session("always-on", names=["Ann", "Bob"])
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)
    def seen(pid: str, name: str, track: int) -> None:
        for _ in range(3):
            clock[0] += 0.1
            mon.observe("cam0", clock[0], Faces(xyxy=[[10, 10, 90, 90]], score=[0.9], track_id=np.array([track]),
                                                identity=[pid], name=[name], similarity=np.array([0.9], np.float32)),
                        frame)

    seen("p1", "Ann", 1)
    assert att.snapshot("always-on", "p1") is not None
    clock[0] += 31 * 86400  # Bob comes 31 days after Ann; the session never ended
    seen("p2", "Bob", 2)
    mon.refresh(force=True)
    assert att.snapshot("always-on", "p1") is None  # older than 30 days: gone, though the session never ended
    assert att.snapshot("always-on", "p2") is not None
    assert {r.person_id for r in att.records("always-on")} == {"p1", "p2"}  # records stay
    assert {e["record"]["person_id"] for e in mon.recent() if e.get("record")} == {"p1", "p2"}
    people.pop(0)  # Ann is erased from the gallery
    assert {e["record"]["person_id"] for e in mon.recent() if e.get("record")} == {"p2"}
    att.close()


def test_strangers_memory_is_bounded():
    from facestream.stream.attendance.monitor import _Looks

    looks = _Looks(capacity=1000)
    rng = np.random.default_rng(0)
    for v in rng.standard_normal((5000, 128)).astype(np.float32):
        looks.add(v / np.linalg.norm(v))
    assert len(looks) == 1000 and looks.matrix.nbytes == 1000 * 128 * 4
    t0 = time.perf_counter()
    for _ in range(100):
        looks.best(rng.standard_normal(128).astype(np.float32))
    assert (time.perf_counter() - t0) / 100 < 0.01  # constant: never the 52 ms of stacking 40,000 lists


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_secrets_never_show_in_messages_or_logs(tmp_path):
    assert redact("redis://:hunter2@db:6379/0") == "redis://:***@db:6379/0"
    assert redact("http://h/?token=abc&password=x") == "http://h/?token=***&password=***"
    err = FacestreamError("Cannot reach redis://user:hunter2@db:6379/0.", "Fix rtsp://a:pw@cam or ?token=zzz.")
    assert "hunter2" not in str(err) and "pw@" not in str(err) and "zzz" not in str(err)
    # the demo's page, with an unreachable password-protected Redis
    from facestream.stream.demo import DemoService

    svc = DemoService(load_config(env={}), gallery="redis://:hunter2@127.0.0.1:1/0")
    with pytest.raises(FacestreamError) as caught:
        svc.people()
    assert "hunter2" not in str(caught.value) and "hunter2" not in svc.describe()
    # -vv logs of a run with a token: the token never appears
    out = subprocess.run([sys.executable, "-m", "facestream", "-vv", "run", str(HAMILTON), "--max-frames", "3",
                          "--token", "very-secret-token-123-abcdef", "--port", "0", "--gallery", f"sqlite:///{tmp_path}/g.db",
                          "--no-attendance"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "very-secret-token-123-abcdef" not in out.stderr and "very-secret-token-123-abcdef" not in out.stdout
