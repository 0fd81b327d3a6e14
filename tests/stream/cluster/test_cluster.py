"""Many machines, one view, end to end: a real Redis, two worker processes, two gateway processes, four sources
(one RTSP stream, three looping files), a headless Chromium on the gateway's dashboard.

Lin-Manuel Miranda, Alex Lacamoire and Joe Biden are enrolled; Joe never appears in the clip.
Worker A (capacity 2) claims two sources, worker B the other two. The dashboard must show all
four cameras with names; killing A (SIGKILL) must move its sources to B within the lease bound;
a second gateway started mid-run must serve the same stream; attendance must name Lin once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from facestream.gallery import open_store
from facestream.gallery.types import NewEmbedding, content_hash
from facestream.stream.attendance import create_session, open_attendance_store
from facestream.stream.attendance.roster import gallery_people
from facestream.stream.cluster.registry import SourceRegistry
from facestream.stream.config import SourceConfig
from facestream.stream.engine.imageio import load_image
from tests.conftest import EXAMPLES, HAMILTON, ROOT, free_port, launch_chromium
from tests.stream.live.test_live_rtsp import SYSTEM_PYTHON, RtspServer, WsCollector
from tests.waiting import wait_until

pytestmark = pytest.mark.slow  # end-to-end: processes, browsers, servers (`make test-fast` skips it)

TOKEN = "cluster-token-0123456789ab"
ENROL = {"Lin-Manuel Miranda": ["Lin_Manuel_Miranda/lin-manuel-miranda.png"],
         "Alex Lacamoire": ["Alex_Lacamoire/alex-lacamoire.png", "Alex_Lacamoire/img1.jpg"],
         "Joe Biden": ["Joe_Biden/biden.jpg"]}
LEASE_S = 6.0  # the default: a dead worker's sources must move within 10 s


class Proc:
    """A facestream command as its own process, logging to a file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT):
        self.log = log
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "facestream", "-v", *args], cwd=cwd, stdout=fh,
                                         stderr=subprocess.STDOUT,
                                         env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"})

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def watching(procs: list[Proc]) -> dict:
    """wait_until's hooks for a cluster test: fail at once when a process exits; show every log on a timeout."""
    def exited() -> str | None:
        dead = [p for p in procs if not p.alive()]
        return f"a process exited ({dead[0].proc.returncode}):\n{dead[0].tail()}" if dead else None

    return {"every": 0.3, "stop_if": exited, "details": lambda: "\n---\n".join(p.tail() for p in procs)}


def stats(port: int) -> dict:
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/stats", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_two_workers_two_gateways_failover_and_one_attendance(redis_url, analyzer, tmp_path):
    from playwright.sync_api import sync_playwright

    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail("the system python with GStreamer's RTSP server is missing; run `bash .ci/setup`")
    with open_store(redis_url) as g:
        for name, files in ENROL.items():
            embs = []
            for rel in files:
                faces, _ = analyzer.largest_face(load_image(EXAMPLES / rel))
                embs.append(NewEmbedding(faces.embedding[0], analyzer.model_id,
                                         content_hash((EXAMPLES / rel).read_bytes()), source=rel))
            g.enroll(name, embs, metadata={"group": "hamilton"})
    att = open_attendance_store(redis_url)
    session = create_session(att, gallery_people(redis_url), "hamilton", roster="group=hamilton")
    ids = {r.name: r.person_id for r in session.roster}

    rtsp = RtspServer(HAMILTON)
    rtsp.start()
    registry = SourceRegistry(redis_url)
    registry.add(SourceConfig(url=rtsp.url, id="door"))
    procs: list[Proc] = []
    common = ["--gallery", redis_url]
    try:
        for i in (1, 2, 3):  # declared with the CLI, as a user would
            out = subprocess.run([sys.executable, "-m", "facestream", "sources", "add", str(HAMILTON), "--id",
                                  f"room{i}", "--realtime", "--loop", *common], cwd=ROOT, capture_output=True,
                                 text=True, timeout=60)
            assert out.returncode == 0, out.stderr
        lease = ["--set", f"cluster.lease_seconds={LEASE_S}", "--set", f"cluster.source_folders=[{HAMILTON.parent}]",
                 "--set", "cluster.allow_local_sources=true"]  # files and the RTSP server here, declared in Redis
        a = Proc(["worker", "--capacity", "2", *lease, *common], tmp_path / "worker-a.log")
        procs.append(a)
        wait_until(lambda: sum(1 for w in registry.holders().values() if w) == 2, 90, "worker A claims two",
                   **watching(procs))
        b_metrics = free_port()
        b = Proc(["worker", "--capacity", "4", "--metrics-port", str(b_metrics), *lease, *common],
                 tmp_path / "worker-b.log")
        procs.append(b)
        wait_until(lambda: all(registry.holders().values()), 90, "worker B claims the other two", **watching(procs))
        holders = registry.holders()
        a_id = next(w for w in set(holders.values()) if w and f"-{a.proc.pid}-" in w)  # ids carry the pid
        a_sources = sorted(s for s, w in holders.items() if w == a_id)
        assert len(a_sources) == 2

        port = free_port()
        gw1 = Proc(["gateway", "--port", str(port), "--token", TOKEN, *common], tmp_path / "gateway-1.log")
        procs.append(gw1)
        wait_until(lambda: "gateway on" in gw1.log.read_text(), 90, "gateway 1 serves", **watching(procs))
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: len(stats(port)["sources"]) == 4, 60, "/stats of both workers on the gateway",
                   **watching(procs))
        st = stats(port)
        assert {s: v["worker"] for s, v in st["sources"].items()} == holders and len(st["workers"]) == 2
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{b_metrics}/metrics", timeout=10) as r:
            b_text = r.read().decode()  # Prometheus scrapes worker B: its two sources, their epochs and fps
        assert sum(1 for line in b_text.splitlines() if line.startswith("facestream_lease_epoch{")) == 2
        assert "facestream_source_fps{" in b_text and "facestream_publisher_messages_sent_total" in b_text

        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/#token={TOKEN}")
            page.wait_for_selector("#conn[data-state=open]", timeout=30_000)
            # every camera of every worker shows up, with boxes and names drawn over it (Lin is named on a part
            # of the clip's frames, so each camera is watched until it has shown a name once)
            named: set[str] = set()

            def every_camera_named() -> bool:
                shown = page.eval_on_selector_all(
                    "#cameras figure", "figs => figs.map(f => [f.querySelector('figcaption b')?.textContent"
                    " || '', f.querySelector('canvas').dataset.names || '',"
                    " Number(f.querySelector('canvas').dataset.drawn || 0)])")
                named.update(cam for cam, names, drawn in shown
                             if drawn > 0 and ("Lin-Manuel Miranda" in names or "Alex Lacamoire" in names))
                return len(shown) == 4 and len(named) == 4

            wait_until(every_camera_named, 120, "all four cameras with names on the dashboard", **watching(procs))
            (ROOT / "artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "artifacts" / "cluster-dashboard.png"))
            lin = f"#roster tr[data-person-id='{ids['Lin-Manuel Miranda']}']"
            page.wait_for_selector(f"{lin}[data-status=present]", timeout=60_000)

            # a second gateway mid-run serves the same stream
            port2 = free_port()
            gw2 = Proc(["gateway", "--port", str(port2), "--token", TOKEN, *common], tmp_path / "gateway-2.log")
            procs.append(gw2)
            wait_until(lambda: "gateway on" in gw2.log.read_text(), 90, "gateway 2 serves", **watching(procs))
            second = WsCollector(f"ws://127.0.0.1:{port2}/", TOKEN).start()
            first = WsCollector(f"ws://127.0.0.1:{port}/", TOKEN).start()
            wait_until(lambda: {m.get("source") for m in second.messages if m["type"] == "frame"} ==
                       {"door", "room1", "room2", "room3"}, 60, "every source on gateway 2", **watching(procs))

            # kill A: its sources move to B within the lease bound, and frames flow again
            t_kill = time.time()
            a.stop(signal.SIGKILL)
            wait_until(lambda: all(registry.holders()[s] not in (None, a_id) for s in a_sources), 20,
                       "A's sources taken over", **watching(procs[1:]))
            takeover_s = time.time() - t_kill
            assert takeover_s < 10.0, f"takeover took {takeover_s:.1f} s"
            n_before = len(first.messages)
            wait_until(lambda: set(a_sources) <= {m.get("source") for m in first.messages[n_before:]
                                                  if m["type"] == "frame"}, 60, "A's cameras live again",
                       **watching(procs[1:]))
            wait_until(lambda: len(stats(port)["workers"]) == 1, 30, "the dead worker leaves /stats",
                       **watching(procs[1:]))
            # nothing doubled on either gateway: each (source, frame) once, in order per source
            for collector in (first, second):
                seen: dict[tuple[str, int], int] = {}
                for m in collector.messages:
                    if m["type"] == "frame":
                        key = (m["source"], m["frame"], m["time"])
                        seen[key] = seen.get(key, 0) + 1
                assert max(seen.values()) == 1
            first.stop()
            second.stop()
            browser.close()
        records = att.records("hamilton")
        by_person = [r.person_id for r in records]
        assert len(by_person) == len(set(by_person))  # once each, across two workers and a handover
        assert ids["Lin-Manuel Miranda"] in by_person and ids["Joe Biden"] not in by_person
    finally:
        for p in reversed(procs):
            p.stop()
        rtsp.kill()
        registry.close()
        att.close()
        redis.Redis.from_url(redis_url).flushdb()
