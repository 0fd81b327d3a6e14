"""Attendance off the pipeline's thread, and nobody lost while the store is away (issue 21, item 3).

A real Redis is paused (SIGSTOP: every call hangs until its timeout) or shut down and started
again with its data; the camera side (the feed's ``on_result``) must never wait on it, and a
person seen only during the outage must be in the store once it is back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from facestream.stream.attendance import AttendanceMonitor, create_session, open_attendance_store
from facestream.stream.attendance.feed import AttendanceFeed
from facestream.stream.config import AttendanceConfig
from facestream.stream.engine.faces import FrameResult
from tests.conftest import RedisServer
from tests.stream.attendance.test_attendance import PEOPLE, faces
from tests.waiting import wait_until


def frame(camera: str, ts: float, *items) -> FrameResult:
    return FrameResult(source_id=camera, frame_index=0, timestamp=ts, faces=faces(*items))


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_stalled_or_restarted_redis_never_holds_a_camera_and_loses_nobody(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    pid = server.pid()
    store = open_attendance_store(server.url)
    check = open_attendance_store(server.url)
    now = time.time()
    create_session(store, lambda: PEOPLE, "shift", roster="group=hamilton", start=now - 60, now=now)
    monitor = AttendanceMonitor(store, AttendanceConfig(min_frames=3, flush_seconds=0.5), people=lambda: PEOPLE)
    monitor.refresh(force=True)
    feed = AttendanceFeed(monitor).start()
    try:
        # Redis stalls: Lin is seen for 2 s (a 25 fps camera), then leaves
        os.kill(pid, signal.SIGSTOP)
        slowest = 0.0
        for _ in range(50):
            t0 = time.perf_counter()
            feed.on_result(frame("cam0", time.time(), (1, "p-lin", 0.8)))
            slowest = max(slowest, time.perf_counter() - t0)
            time.sleep(0.04)
        assert slowest < 0.05, f"the camera waited {slowest:.3f} s on attendance"
        os.kill(pid, signal.SIGCONT)
        assert wait_until(lambda: [r.person_id for r in check.records("shift")] == ["p-lin"], 30)

        # Redis goes down and comes back with its data: Alex is seen only while it is down
        subprocess.run(["redis-cli", "-p", str(server.port), "shutdown", "save"], capture_output=True, check=True)
        for _ in range(20):
            feed.on_result(frame("cam0", time.time(), (2, "p-alex", 0.9)))
            time.sleep(0.04)
        assert wait_until(lambda: feed.stats()["queued"] == 0 and len(monitor.outbox) == 1, 10)
        server.start()  # --dir holds the dump it saved: sessions and records are back
        assert wait_until(lambda: {r.person_id for r in check.records("shift")} == {"p-lin", "p-alex"}, 30)
        stats = feed.stats()
        assert stats["dropped"] == 0 and stats["outbox_waiting"] == 0 and stats["outbox_written"] >= 1
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGCONT)
        feed.stop(5)
        store.close()
        check.close()
        server.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
