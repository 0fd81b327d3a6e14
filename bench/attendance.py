"""Attendance overhead per frame, store write latency and report export, on SQLite and Redis.

    .venv/bin/python bench/attendance.py                 # sqlite + redis (starts a redis-server)
    .venv/bin/python bench/attendance.py --stores sqlite --faces 20

The monitor runs in every pipeline worker thread, so its per-frame cost is what
a camera pays: reported as the median ms of ``AttendanceMonitor.observe`` for a
frame with ``--faces`` recognised tracks (writes throttled by
``attendance.flush_seconds``, as in production), the median ms of one
``upsert`` (a sighting written through), and the time to build a CSV/XLSX
report of a ``--roster`` person session. Results: bench/results/attendance-<machine>.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_info, redis_server, summarize, time_calls, write_result  # noqa: E402
from facestream.stream.attendance import (  # noqa: E402
    AttendanceMonitor,
    create_session,
    open_attendance_store,
    to_csv,
    to_xlsx,
)
from facestream.stream.config import AttendanceConfig  # noqa: E402
from facestream.stream.engine.faces import Faces  # noqa: E402


class _P:
    def __init__(self, i: int):
        self.id, self.name, self.metadata = f"p{i:05d}", f"Person {i:05d}", {"group": "all"}


def bench_store(url: str, faces: int, roster: int, repeats: int) -> dict:
    store = open_attendance_store(url)
    people = [_P(i) for i in range(roster)]
    create_session(store, lambda: people, "bench", roster="group=all")
    clock = [time.time()]
    monitor = AttendanceMonitor(store, AttendanceConfig(min_frames=5), people=lambda: people, clock=lambda: clock[0])
    monitor.refresh(force=True)
    frame = Faces(xyxy=np.tile([[10, 10, 90, 90]], (faces, 1)), score=np.ones(faces),
                  track_id=np.arange(faces), identity=[p.id for p in people[:faces]],
                  name=[p.name for p in people[:faces]], similarity=np.full(faces, 0.9, np.float32))

    def one_frame():
        clock[0] += 1 / 30
        monitor.observe("cam0", clock[0], frame)

    observe = summarize(time_calls(one_frame, repeats, warmup=10))
    k = [0]

    def one_upsert():
        k[0] += 1
        p = people[k[0] % roster]
        store.upsert("bench", p.id, p.name, True, clock[0], clock[0] + k[0], "cam0", 0.9)

    upsert = summarize(time_calls(one_upsert, repeats, warmup=5))
    for p in people:  # everyone present, for the report
        store.upsert("bench", p.id, p.name, True, clock[0], clock[0], "cam0", 0.9)
    session = store.get_session("bench")

    def build():
        return store.attendance(session)

    att = build()
    out = {
        "observe_frame": observe, "upsert": upsert,
        "load_session": summarize(time_calls(build, 5)),
        "csv": summarize(time_calls(lambda: to_csv(att), 5)),
        "xlsx": summarize(time_calls(lambda: to_xlsx(att), 3)),
    }
    assert len(att.roster) == roster and all(r["status"] == "present" for r in att.roster)
    store.delete_session("bench")
    store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stores", default="sqlite,redis")
    p.add_argument("--faces", type=int, default=10, help="recognised tracks per frame")
    p.add_argument("--roster", type=int, default=1000, help="people in the session (report size)")
    p.add_argument("--repeats", type=int, default=300)
    args = p.parse_args(argv)
    info = machine_info()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.stores.split(","):
            if kind == "sqlite":
                results[kind] = bench_store(f"sqlite:///{tmp}/bench.db", args.faces, args.roster, args.repeats)
            else:
                with redis_server() as url:
                    results[kind] = bench_store(url, args.faces, args.roster, args.repeats)
    write_result("attendance", {"faces_per_frame": args.faces, "roster": args.roster, "results": results,
                                "machine": info})
    for kind, r in results.items():
        print(f"{kind}: observe {r['observe_frame']['median_ms']:.3f} ms/frame ({args.faces} faces), "
              f"upsert {r['upsert']['median_ms']:.3f} ms, {args.roster}-person report: "
              f"load {r['load_session']['median_ms']:.1f} ms, csv {r['csv']['median_ms']:.1f} ms, "
              f"xlsx {r['xlsx']['median_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
