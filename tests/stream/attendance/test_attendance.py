"""Attendance domain: the presence rule, both real stores, sessions, restart, reports, bad input.

Observations are synthetic (Faces with track ids and identities, as the
pipeline produces them); the stores are a real SQLite file and the real Redis
server from conftest.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time

import numpy as np
import pytest

from facestream.errors import FacestreamError
from facestream.gallery.types import Person
from facestream.stream.attendance import (
    ABSENT,
    LATE,
    PRESENT,
    AttendanceMonitor,
    create_session,
    open_attendance_store,
    stop_session,
    to_csv,
    to_xlsx,
)
from facestream.stream.attendance.marker import PresenceRule
from facestream.stream.attendance.outbox import RETRY_S
from facestream.stream.attendance.store import SessionNotFound
from facestream.stream.config import AttendanceConfig, AttendanceScheduleEntry
from facestream.stream.engine.faces import Faces

PEOPLE = [
    Person("p-lin", "Lin-Manuel Miranda", {"group": "hamilton", "tags": ["cast", "writer"]}),
    Person("p-alex", "Alex Lacamoire", {"group": "hamilton", "tags": "band,music"}),
    Person("p-joe", "Joe Biden", {"group": "hamilton"}),
    Person("p-obama", "Barack Obama", {"group": "audience"}),
]
T0 = 1_800_000_000.0  # a fixed "now" so statuses do not depend on the wall clock


def faces(*items: tuple[int, str | None, float]) -> Faces:
    """One frame: (track_id, person_id or None, similarity) per face."""
    n = len(items)
    names = {p.id: p.name for p in PEOPLE}
    return Faces(
        xyxy=np.tile(np.array([[100, 80, 180, 180]], np.float32), (n, 1)) + np.arange(n)[:, None] * 200,
        score=np.full(n, 0.9, np.float32),
        track_id=np.array([t for t, _, _ in items], np.int64),
        identity=[p for _, p, _ in items],
        name=[names.get(p, "unknown") if p else "unknown" for _, p, _ in items],
        similarity=np.array([s for _, _, s in items], np.float32),
    )


@pytest.fixture
def store(store_url):
    s = open_attendance_store(store_url)
    yield s
    s.close()


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)


# -- the presence rule -------------------------------------------------------------------------------

def test_one_wrong_frame_never_marks_and_one_track_must_carry_the_evidence():
    rule = PresenceRule(min_frames=5)
    assert not rule.observe("cam0", 1, 0.0, "p-joe", "Joe", 0.7).state.confirmed
    # five frames spread over five different tracks: no single track carries the evidence
    for t in range(2, 7):
        assert not rule.observe("cam0", t, 0.1 * t, "p-lin", "Lin", 0.8).state.confirmed
    # an identity switch on a track starts again
    for k in range(4):
        rule.observe("cam0", 9, 1 + k / 30, "p-lin", "Lin", 0.8)
    s = rule.observe("cam0", 9, 1.2, "p-alex", "Alex", 0.8)
    assert s.state.frames == 1 and not s.state.confirmed
    # the same track id on another camera is another track
    for k in range(4):
        rule.observe("cam1", 9, 2 + k / 30, "p-alex", "Alex", 0.8)
    assert rule.observe("cam1", 9, 2.2, "p-alex", "Alex", 0.8).state.frames == 5
    results = [rule.observe("cam0", 9, 1.3 + k / 30, "p-alex", "Alex", 0.8) for k in range(4)]
    assert [r.newly_confirmed for r in results] == [False, False, False, True]
    assert rule.observe("cam0", 9, 1.5, "p-alex", "Alex", 0.9).newly_confirmed is False  # only once


def test_threshold_and_min_seconds():
    rule = PresenceRule(min_frames=3, min_seconds=1.0, threshold=0.6)
    assert rule.observe("cam0", 1, 0.0, "p-lin", "Lin", 0.55) is None  # below threshold: does not count
    for k in range(10):
        s = rule.observe("cam0", 1, k * 0.1, "p-lin", "Lin", 0.7)
        assert not s.state.confirmed  # 10 frames but only 0.9 s
    assert rule.observe("cam0", 1, 1.0, "p-lin", "Lin", 0.7).newly_confirmed
    # frames without a fresh similarity (tracker carried the identity) still count
    for k in range(3):
        s = rule.observe("cam0", 2, 5 + k, "p-alex", "Alex", float("nan"))
    assert s.state.confirmed


# -- stores ------------------------------------------------------------------------------------------

def test_store_upsert_keeps_earliest_first_seen_and_best_snapshot(store, store_url):
    s = create_session(store, lambda: PEOPLE, "cs101", roster="group=hamilton", start=T0, now=T0)
    assert [r.name for r in s.roster] == ["Alex Lacamoire", "Joe Biden", "Lin-Manuel Miranda"]
    rec, created = store.upsert("cs101", "p-lin", "Lin-Manuel Miranda", True, T0 + 10, T0 + 12, "cam0", 0.8, b"A")
    assert created and rec.first_seen == pytest.approx(T0 + 10) and rec.has_snapshot
    rec, created = store.upsert("cs101", "p-lin", "Lin-Manuel Miranda", True, T0 + 30, T0 + 31, "cam1", 0.7, b"B")
    assert not created
    assert rec.first_seen == pytest.approx(T0 + 10) and rec.last_seen == pytest.approx(T0 + 31)
    assert rec.camera == "cam0" and rec.best_similarity == pytest.approx(0.8)
    assert store.snapshot("cs101", "p-lin") == b"A"  # a worse match does not replace the snapshot
    store.upsert("cs101", "p-lin", "Lin-Manuel Miranda", True, T0 + 5, T0 + 6, "cam2", 0.9, b"C")
    assert store.snapshot("cs101", "p-lin") == b"C"
    rec = store.records("cs101")[0]
    assert rec.first_seen == pytest.approx(T0 + 5) and rec.camera == "cam2" and rec.last_seen == pytest.approx(T0 + 31)
    assert store.add_unknown("cs101", T0, "cam0") == 1
    assert store.add_unknown("cs101", T0, "cam0", b"JPEG") == 2
    # a second connection (another process, or this one after a restart) sees the same thing
    other = open_attendance_store(store_url)
    assert len(other.records("cs101")) == 1 and other.unknown_count("cs101") == 2
    assert other.unknown_snapshots("cs101") == [(pytest.approx(T0), "cam0", b"JPEG")]
    assert other.get_session("cs101").roster == s.roster
    # a running monitor reads only sessions that have not long ended
    create_session(store, lambda: PEOPLE, "old", names=["Joe Biden"], start=T0 - 9000, end=T0 - 5000, now=T0)
    assert [x.name for x in store.open_sessions(T0 - 3600)] == ["cs101"]
    store.set_end("cs101", T0 + 50)
    assert store.open_sessions(T0 + 60) == [] and [x.name for x in store.open_sessions(T0)] == ["cs101"]
    store.set_end("cs101", None)
    # deleting a person from the gallery removes every trace here too
    store.upsert("cs101", "p-joe", "Joe Biden", True, T0 + 7, T0 + 8, "cam0", 0.7, b"J")
    assert other.forget_person("p-joe") == 2  # his record in cs101, his roster places in cs101 and old
    assert store.snapshot("cs101", "p-joe") is None and [r.person_id for r in store.records("cs101")] == ["p-lin"]
    assert "p-joe" not in store.get_session("cs101").roster_ids()
    # retention: the snapshots of sessions that ended before the cut go, records and counts stay
    store.upsert("old", "p-joe", "Joe Biden", True, T0 - 8000, T0 - 7990, "cam0", 0.7, b"OLDJPEG")
    store.add_unknown("old", T0 - 8000, "cam0", b"OLDSTRANGER")
    assert store.purge_snapshots(T0 - 4000) == 1  # "old" ended at T0 - 5000; cs101 is open
    assert store.snapshot("old", "p-joe") is None and store.unknown_snapshots("old") == []
    assert [r.person_id for r in store.records("old")] == ["p-joe"] and not store.records("old")[0].has_snapshot
    assert store.unknown_count("old") == 1 and store.snapshot("cs101", "p-lin") == b"C"
    other.delete_session("cs101")
    assert store.get_session("cs101") is None and store.records("cs101") == [] and store.unknown_count("cs101") == 0
    other.close()


# -- the monitor: marking, statuses, restart -----------------------------------------------------------

def feed(monitor: AttendanceMonitor, clock: Clock, n: int, *items, camera: str = "cam0", img=None) -> None:
    for _ in range(n):
        clock.t += 1 / 30
        monitor.observe(camera, clock.t, faces(*items), img)


def test_monitor_marks_present_late_absent_extra_unknown_and_survives_restart(store, store_url):
    clock = Clock()
    cfg = AttendanceConfig(min_frames=5, late_after_minutes=1, flush_seconds=0.5, keep_snapshots=True,
                           keep_unknown_snapshots=True)
    events: list[dict] = []
    mon = AttendanceMonitor(store, cfg, people=lambda: PEOPLE, threshold=0.6, clock=clock)
    mon.add_listener(events.append)
    mon.start_session("hamilton", roster="group=hamilton", cameras=["cam0"])
    img = frame()
    # one wrong frame of Joe Biden, then Lin for 4 frames: nobody yet
    feed(mon, clock, 1, (1, "p-joe", 0.62), img=img)
    feed(mon, clock, 4, (2, "p-lin", 0.8), img=img)
    assert store.records("hamilton") == []
    feed(mon, clock, 1, (2, "p-lin", 0.85), img=img)
    recs = store.records("hamilton")
    assert [r.person_id for r in recs] == ["p-lin"] and recs[0].has_snapshot
    assert store.snapshot("hamilton", "p-lin")[:2] == b"\xff\xd8"  # a JPEG
    assert any(e["type"] == "attendance" and e["new"] and e["record"]["status"] == PRESENT for e in events)
    # a camera the session does not watch is ignored
    feed(mon, clock, 10, (7, "p-alex", 0.9), camera="cam9")
    assert len(store.records("hamilton")) == 1
    # Obama (not on the roster) and an unknown face, then Alex after the late delay
    feed(mon, clock, 6, (3, "p-obama", 0.9), (4, None, float("nan")), img=img)
    clock.t += 120
    feed(mon, clock, 6, (5, "p-alex", 0.75), img=img)
    att = mon.attendance("hamilton")
    status = {r["name"]: r["status"] for r in att.roster}
    assert status == {"Lin-Manuel Miranda": PRESENT, "Alex Lacamoire": LATE, "Joe Biden": ABSENT}
    assert [r["name"] for r in att.extra] == ["Barack Obama"] and att.unknown == 1
    assert len(store.unknown_snapshots("hamilton")) == 1
    lin_first = store.records("hamilton")[0].first_seen

    # restart mid-session: a new process, new tracker ids, Lin seen again on a new track
    store2 = open_attendance_store(store_url)
    mon2 = AttendanceMonitor(store2, cfg, people=lambda: PEOPLE, threshold=0.6, clock=clock)
    clock.t += 5
    feed(mon2, clock, 8, (1, "p-lin", 0.82), img=img)
    recs = {r.person_id: r for r in store2.records("hamilton")}
    assert sorted(recs) == ["p-alex", "p-lin", "p-obama"]  # nobody counted twice, nobody lost
    assert recs["p-lin"].first_seen == pytest.approx(lin_first) and recs["p-lin"].last_seen > lin_first + 100
    att2 = mon2.attendance("hamilton")
    assert {r["name"]: r["status"] for r in att2.roster} == status and att2.unknown == 1

    # the end: absent stays absent, the report says what the monitor says
    mon2.stop_session("hamilton")
    assert any(e["type"] == "session" and e["action"] == "closed" for e in events) is False  # other process
    clock.t += 1
    feed(mon2, clock, 10, (9, "p-joe", 0.9), img=img)  # after the end: not counted
    att3 = mon2.attendance()  # the latest session
    assert att3.session.name == "hamilton" and att3.counts() == {
        PRESENT: 1, LATE: 1, ABSENT: 1, "not_on_roster": 1, "unknown": 1}
    rows = list(csv.DictReader(io.StringIO(to_csv(att3).decode().split("# unknown")[0])))
    assert [(r["name"], r["status"]) for r in rows] == [
        ("Alex Lacamoire", LATE), ("Joe Biden", ABSENT), ("Lin-Manuel Miranda", PRESENT),
        ("Barack Obama", "present (not on roster)")]
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(to_xlsx(att3)))
    sheet = [[c.value for c in row] for row in wb["attendance"].iter_rows()]
    assert sheet[0][2] == "name" and [r[4] for r in sheet[1:]] == [r["status"] for r in rows]
    store2.close()


def test_sessions_started_elsewhere_and_the_timetable_take_effect(tmp_path):
    url = f"sqlite:///{tmp_path}/g.db"
    store = open_attendance_store(url)
    now = time.time()
    clock = Clock(now)
    hhmm = time.strftime("%H:%M", time.localtime(now - 60))
    end = time.strftime("%H:%M", time.localtime(now + 3600))
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    if end < hhmm:  # around midnight the window would wrap; keep the test meaningful
        hhmm, end = "00:00", "23:59"
    cfg = AttendanceConfig(min_frames=2, schedule=[AttendanceScheduleEntry(
        name="band", people=["Alex Lacamoire"], cameras=["cam1"], days=days, start=hhmm, end=end)])
    events: list[dict] = []
    mon = AttendanceMonitor(store, cfg, people=lambda: PEOPLE, clock=clock)
    mon.add_listener(events.append)
    mon.record_day_session()
    names = sorted(mon.sessions)
    assert len(names) == 2 and names[0].startswith("band ") and names[1].startswith("day ")
    day = mon.sessions[names[1]]
    assert day.kind == "default" and len(day.roster) == len(PEOPLE)
    # another process (the CLI) starts a session on cam0; the monitor picks it up on refresh
    other = open_attendance_store(url)
    create_session(other, lambda: PEOPLE, "cli", names=["Lin-Manuel Miranda"], cameras=["cam0"], now=now)
    clock.t += 2
    feed(mon, clock, 3, (1, "p-lin", 0.9), camera="cam0")
    feed(mon, clock, 3, (2, "p-alex", 0.9), camera="cam1")
    got = {s: sorted(r.name for r in store.records(s)) for s in mon.sessions}
    assert got == {names[0]: ["Alex Lacamoire"], names[1]: ["Alex Lacamoire", "Lin-Manuel Miranda"],
                   "cli": ["Lin-Manuel Miranda"]}
    assert {e["session"]["name"] for e in events if e["type"] == "session"} == {names[0], names[1], "cli"}
    stop_session(other, "cli", now=clock.t)
    clock.t += 2
    mon.refresh()
    assert any(e["type"] == "session" and e["action"] == "closed" and e["session"]["name"] == "cli" for e in events)


def test_a_night_shift_in_the_timetable_runs_past_midnight(tmp_path):
    """``start 22:00, end 06:00`` on Sundays: open at 01:30 on Monday, named after Sunday, closed by 06:00."""
    from datetime import datetime

    store = open_attendance_store(f"sqlite:///{tmp_path}/g.db")
    cfg = AttendanceConfig(min_frames=2, schedule=[
        AttendanceScheduleEntry(name="night", people=["Joe Biden"], days=["sun"], start="22:00", end="06:00"),
        AttendanceScheduleEntry(name="day", people=["Joe Biden"], days=["mon"], start="09:00", end="17:00"),
    ])
    monday_0130 = datetime(2026, 11, 23, 1, 30)  # 2026-11-22 is a Sunday
    clock = Clock(monday_0130.timestamp())
    mon = AttendanceMonitor(store, cfg, people=lambda: PEOPLE, clock=clock)
    mon.refresh(force=True)
    assert sorted(mon.sessions) == ["night 2026-11-22"]
    night = mon.sessions["night 2026-11-22"]
    assert night.start == datetime(2026, 11, 22, 22, 0).timestamp()
    assert night.end == datetime(2026, 11, 23, 6, 0).timestamp() and night.state(clock.t) == "active"
    feed(mon, clock, 3, (1, "p-joe", 0.9))
    assert [r.name for r in store.records("night 2026-11-22")] == ["Joe Biden"]
    # at 07:00 the night shift is over and nothing else is due yet
    later = AttendanceMonitor(store, cfg, people=lambda: PEOPLE, clock=Clock(datetime(2026, 11, 23, 7).timestamp()))
    later.refresh(force=True)
    assert [n for n, s in later.sessions.items() if s.state(later.clock()) == "active"] == []
    # a Monday night is not a Sunday night: nothing opens at 23:00 on Monday
    monday_night = AttendanceMonitor(store, cfg, people=lambda: PEOPLE,
                                     clock=Clock(datetime(2026, 11, 23, 23).timestamp()))
    monday_night.refresh(force=True)
    assert "night 2026-11-23" not in monday_night.sessions
    with pytest.raises(ValueError, match="equals start"):
        AttendanceScheduleEntry(name="x", start="08:00", end="08:00")


def test_bad_input_gives_clear_messages(tmp_path):
    store = open_attendance_store(f"sqlite:///{tmp_path}/g.db")
    with pytest.raises(FacestreamError, match="No attendance sessions"):
        store.require_session(None)
    create_session(store, lambda: PEOPLE, "morning", roster="group=hamilton", cameras=["cam0", "cam1"], now=T0)
    with pytest.raises(FacestreamError, match="Unknown attendance session 'evening'.*morning"):
        store.require_session("evening")
    with pytest.raises(FacestreamError, match="not enrolled: Nobody Here, Also Missing"):
        create_session(store, lambda: PEOPLE, "x", names=["Nobody Here", "Joe Biden", "Also Missing"], now=T0)
    with pytest.raises(FacestreamError, match="No enrolled person has group=nobody"):
        create_session(store, lambda: PEOPLE, "x", roster="group=nobody", now=T0)
    with pytest.raises(FacestreamError, match="Bad roster selector"):
        create_session(store, lambda: PEOPLE, "x", roster="hamilton", now=T0)
    with pytest.raises(FacestreamError, match="no roster"):
        create_session(store, lambda: PEOPLE, "x", now=T0)
    with pytest.raises(FacestreamError, match="overlaps session 'morning' on camera\\(s\\) cam1"):
        create_session(store, lambda: PEOPLE, "x", roster="group=audience", cameras=["cam1", "cam2"], now=T0)
    with pytest.raises(FacestreamError, match="overlaps session 'morning'"):
        create_session(store, lambda: PEOPLE, "x", roster="group=audience", now=T0)  # all cameras
    with pytest.raises(FacestreamError, match="already exists"):
        create_session(store, lambda: PEOPLE, "morning", roster="group=audience", cameras=["cam5"], now=T0)
    with pytest.raises(FacestreamError, match="end .* before it starts"):
        create_session(store, lambda: PEOPLE, "x", roster="group=audience", start=T0, end=T0 - 1, now=T0)
    with pytest.raises(FacestreamError, match="Bad session name"):
        create_session(store, lambda: PEOPLE, "../etc", roster="group=audience", now=T0)
    for late in (-60.0, float("nan"), float("inf"), 1e308 * 60):  # every caller (CLI, dashboard, timetable)
        with pytest.raises(FacestreamError, match="between 0 and 1440 minutes"):
            create_session(store, lambda: PEOPLE, "x", roster="group=audience", cameras=["cam7"], late_after_s=late,
                           now=T0)
    with pytest.raises(SessionNotFound):  # a distinct type, so the dashboard's API can answer 404
        store.require_session("evening")
    # another camera, or a time after the first one ended, is fine
    create_session(store, lambda: PEOPLE, "side", roster="group=audience", cameras=["cam2"], now=T0)
    stop_session(store, "morning", now=T0 + 60)
    with pytest.raises(FacestreamError, match="already ended"):
        stop_session(store, "morning", now=T0 + 61)
    create_session(store, lambda: PEOPLE, "later", roster="group=audience", cameras=["cam0"], start=T0 + 100,
                   now=T0 + 61)
    with pytest.raises(FacestreamError, match="is not one facestream knows"):  # the gallery's rule, one for both
        open_attendance_store("mysql://x")


def test_two_workers_on_one_redis_count_a_person_once(redis_url):
    """Two processes' monitors (one per camera) see the same person at once: one record, earliest sighting."""
    import threading

    stores = [open_attendance_store(redis_url) for _ in range(2)]
    create_session(stores[0], lambda: PEOPLE, "shared", roster="group=hamilton", start=T0, now=T0)
    cfg = AttendanceConfig(min_frames=3, flush_seconds=0.1)
    monitors = [AttendanceMonitor(s, cfg, people=lambda: PEOPLE, clock=Clock(T0 + 1)) for s in stores]
    barrier = threading.Barrier(2)

    def worker(k: int) -> None:
        barrier.wait()
        t = T0 + 1 + 0.5 * k  # camera 1 sees Lin half a second later
        for _ in range(60):
            t += 1 / 30
            monitors[k].observe(f"cam{k}", t, faces((1, "p-lin", 0.8 + 0.01 * k)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    recs = stores[1].records("shared")
    assert [r.person_id for r in recs] == ["p-lin"]
    assert recs[0].camera == "cam0" and recs[0].first_seen == pytest.approx(T0 + 1 + 1 / 30, abs=1e-3)
    assert recs[0].best_similarity == pytest.approx(0.81) and recs[0].last_seen > T0 + 2.9


def test_unknown_faces_are_counted_once_when_they_leave_nameless(tmp_path):
    store = open_attendance_store(f"sqlite:///{tmp_path}/g.db")
    clock = Clock()
    mon = AttendanceMonitor(store, AttendanceConfig(min_frames=3, keep_unknown_snapshots=True),
                            people=lambda: PEOPLE, clock=clock)
    mon.start_session("s", roster="group=hamilton")
    img = frame()
    # track 1: unknown for its first frames, then its votes name it Lin -> not an unknown face
    feed(mon, clock, 5, (1, None, float("nan")), img=img)
    feed(mon, clock, 3, (1, "p-lin", 0.9), img=img)
    # track 2: a stranger for 10 frames
    feed(mon, clock, 10, (2, None, float("nan")), img=img)
    assert store.unknown_count("s") == 0  # still in the picture: not counted yet
    clock.t += 30  # both leave; the next frame (of someone else) lets the monitor notice
    feed(mon, clock, 1, (3, "p-joe", 0.9))
    assert store.unknown_count("s") == 1 and len(store.unknown_snapshots("s")) == 1
    clock.t += 30
    feed(mon, clock, 1, (3, "p-joe", 0.9))
    assert store.unknown_count("s") == 1


def test_a_stranger_who_comes_back_is_counted_once(tmp_path):
    """Two tracks that look alike (the pipeline's appearance embeddings) are one stranger, not two."""
    store = open_attendance_store(f"sqlite:///{tmp_path}/g.db")
    clock = Clock()
    config = AttendanceConfig(min_frames=3)
    mon = AttendanceMonitor(store, config, people=lambda: PEOPLE, threshold=0.9, clock=clock)
    mon.start_session("s", roster="group=hamilton")
    rng = np.random.default_rng(0)

    def unit(v: np.ndarray) -> np.ndarray:
        return (v / np.linalg.norm(v)).astype(np.float32)

    ada, bob = unit(rng.normal(size=128)), unit(rng.normal(size=128))

    def visit(monitor: AttendanceMonitor, track: int, look: np.ndarray | None) -> int:
        for k in range(6):
            f = faces((track, None, float("nan")))
            # like the pipeline: no embedding on the first frames, then the track's running appearance
            f.embedding = None if look is None or k < 2 else look[None, :]
            clock.t += 1 / 30
            monitor.observe("cam0", clock.t, f)
        clock.t += 30  # gone; the next frame (of someone else) lets the monitor notice
        feed(monitor, clock, 1, (99, "p-joe", 0.9))
        return store.unknown_count("s")

    assert visit(mon, 1, ada) == 1
    assert visit(mon, 2, unit(ada + 0.1 * unit(rng.normal(size=128)))) == 1  # Ada again: new track, same face
    assert visit(mon, 3, bob) == 2  # somebody else
    assert visit(mon, 4, None) == 3  # never embedded (too small, say): nothing to compare with, so counted
    # strangers' looks live in memory only: a restarted process cannot recognise Ada, and counts her again
    restarted = AttendanceMonitor(store, config, people=lambda: PEOPLE, threshold=0.9, clock=clock)
    assert visit(restarted, 5, ada) == 4


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_locked_sqlite_file_is_a_clear_error_and_the_live_run_goes_on(tmp_path):
    """Another process holding the write lock gives a FacestreamError (not sqlite3's); the monitor retries."""
    path = tmp_path / "g.db"
    store = open_attendance_store(f"sqlite:///{path}")
    clock = Clock()
    mon = AttendanceMonitor(store, AttendanceConfig(min_frames=3), people=lambda: PEOPLE, clock=clock)
    mon.start_session("s", roster="group=hamilton")
    store._db.execute("PRAGMA busy_timeout = 50")  # fail fast instead of waiting 30 s for the lock
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    with pytest.raises(FacestreamError, match="resumes when the database is writable"):
        store.upsert("s", "p-joe", "Joe Biden", True, T0, T0, "cam0", 0.9)
    with pytest.raises(FacestreamError, match="database is locked"):
        store.add_unknown("s", T0, "cam0")
    feed(mon, clock, 5, (1, "p-lin", 0.9))  # confirmed while locked: no traceback, nothing written yet
    assert store.records("s") == []
    other.execute("ROLLBACK")
    other.close()
    time.sleep(RETRY_S)  # the outbox waits a moment before it tries the store again
    assert mon.retry_unsent() == 1  # written although Lin is not in view any more
    assert [r.person_id for r in store.records("s")] == ["p-lin"] and store.unknown_count("s") == 0
    store.close()
