"""The dashboard end to end: a real `facestream run` on the Hamilton clip, a real headless Chromium.

Lin-Manuel Miranda, Alex Lacamoire and Joe Biden are enrolled (a roster of the
three); Joe never appears in the clip. The page must show Lin turn present, Joe
stay absent and boxes drawn over the live view; the CSV report must say what
the page shows; a restart of the server in the middle of the session must
count nobody twice and lose nobody, and the page must reconnect by itself.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from facestream.gallery import open_store
from facestream.gallery.types import NewEmbedding, content_hash
from facestream.stream.attendance import create_session, open_attendance_store
from facestream.stream.attendance.roster import gallery_people
from facestream.stream.engine.imageio import load_image
from facestream.stream.serve.server import StreamServer
from tests.conftest import EXAMPLES, HAMILTON, ROOT, free_port, launch_chromium
from tests.waiting import wait_until

pytestmark = pytest.mark.slow  # end-to-end: processes, browsers, servers (`make test-fast` skips it)

TOKEN = "dash-secret-0123456789abc"
ENROL = {
    "Lin-Manuel Miranda": ["Lin_Manuel_Miranda/lin-manuel-miranda.png"],
    "Alex Lacamoire": ["Alex_Lacamoire/alex-lacamoire.png", "Alex_Lacamoire/img1.jpg"],
    "Joe Biden": ["Joe_Biden/biden.jpg"],
}


@pytest.fixture(scope="module")
def gallery_url(tmp_path_factory, analyzer) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('dash')}/gallery.db"
    with open_store(url) as g:
        for name, files in ENROL.items():
            embs = []
            for rel in files:
                path = EXAMPLES / rel
                faces, _ = analyzer.largest_face(load_image(path))
                embs.append(NewEmbedding(vector=faces.embedding[0], model_id=analyzer.model_id,
                                         hash=content_hash(path.read_bytes()), source=rel))
            g.enroll(name, embs, metadata={"group": "hamilton"})
    return url


class Run:
    """`facestream run` on the looping clip, as a separate process (so it can be killed and restarted)."""

    def __init__(self, url: str, port: int, log: Path, session: str | None = "hamilton"):
        cmd = [sys.executable, "-m", "facestream", "-v", "run", str(HAMILTON), "--loop", "--realtime", "--dashboard",
               "--gallery", url, "--port", str(port), "--token", TOKEN, "--sign-in-link"]
        if session:
            cmd += ["--session", session]
        self.port = port
        self.log = log
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"facestream run exited with {self.proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.3)
        self.stop()
        pytest.fail(f"facestream run did not serve in 90 s:\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def http_get(url: str, token: str | None = TOKEN) -> tuple[int, bytes]:
    """GET with the token as a bearer header (never in the address: servers refuse that)."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()




def page_statuses(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "#roster tbody tr", "rows => Object.fromEntries(rows.map(r => [r.dataset.personId, r.dataset.status]))")


def test_dashboard_live_attendance_report_restart_and_auth(gallery_url, tmp_path):
    from playwright.sync_api import sync_playwright

    store = open_attendance_store(gallery_url)
    session = create_session(store, gallery_people(gallery_url), "hamilton", roster="group=hamilton")
    ids = {r.name: r.person_id for r in session.roster}
    assert set(ids) == set(ENROL)
    port = free_port()
    run = Run(gallery_url, port, tmp_path / "run1.log")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: f"dashboard: {base}/#token={TOKEN}" in (tmp_path / "run1.log").read_text(), 30,
               "the dashboard address printed by --dashboard")
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/#token={TOKEN}")
            page.wait_for_selector("#conn[data-state=open]", timeout=30_000)
            assert TOKEN not in page.url  # traded for a session cookie: not in the address, the history or any URL
            lin = f"#roster tr[data-person-id='{ids['Lin-Manuel Miranda']}']"
            page.wait_for_selector(f"{lin}[data-status=present]", timeout=90_000)
            assert page.get_attribute(f"#roster tr[data-person-id='{ids['Joe Biden']}']", "data-status") == "absent"
            # the event log tells the story, including what happened before the page connected
            page.wait_for_selector("#log li[data-kind=present]", timeout=30_000)
            assert "Lin-Manuel Miranda present in hamilton" in page.inner_text("#log")
            # the live view draws boxes with names over the frames
            page.wait_for_function(
                "() => [...document.querySelectorAll('#cameras canvas')].some(c => Number(c.dataset.drawn) > 0"
                " && c.dataset.names.includes('Lin-Manuel Miranda'))", timeout=60_000)
            # liveness (report mode, the default) reaches the page with every named face (its verdicts on the
            # clip are checked in process: tests/stream/live/test_liveness.py)
            page.wait_for_function(
                "() => [...document.querySelectorAll('#cameras canvas')].some(c => JSON.parse(c.dataset.faces"
                " || '[]').some(f => f.name === 'Lin-Manuel Miranda' && ['unknown', 'live', 'spoof']"
                ".includes(f.liveness)))", timeout=60_000)
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot))
            (ROOT / "artifacts").mkdir(exist_ok=True)
            shutil.copy(shot, ROOT / "artifacts" / "dashboard.png")

            # the report (the page's own download link) says what the page shows
            shown = page_statuses(page)
            href = page.get_attribute("#report-csv", "href")
            resp = page.request.get(base + href)
            assert resp.status == 200 and "attachment" in resp.headers["content-disposition"]
            rows = list(csv.DictReader(io.StringIO(resp.text().split("# unknown")[0])))
            roster_rows = {r["person_id"]: r["status"] for r in rows if r["on_roster"] == "yes"}
            assert roster_rows == shown
            assert shown[ids["Lin-Manuel Miranda"]] == "present" and shown[ids["Joe Biden"]] == "absent"

            # `facestream run` serves the HTTP API too, behind the same token
            status, body = http_get(f"{base}/api/people")
            assert status == 200 and {p["name"] for p in json.loads(body)} == set(ENROL)
            assert http_get(f"{base}/api/people", token=None)[0] == 401

            # restart in the middle of the session: the page reconnects, nobody is counted twice or lost
            before = {r.person_id: r for r in store.records("hamilton")}
            run.stop()
            page.wait_for_selector("#conn[data-state=reconnecting]", timeout=30_000)
            t_restart = time.time()
            run = Run(gallery_url, port, tmp_path / "run2.log")
            page.wait_for_selector("#conn[data-state=open]", timeout=30_000)
            lin_id = ids["Lin-Manuel Miranda"]
            wait_until(lambda: any(r.person_id == lin_id and r.last_seen > t_restart
                                   for r in store.records("hamilton")), 90, "Lin seen again after the restart")
            after = {r.person_id: r for r in store.records("hamilton")}
            assert set(before) <= set(after) and len(after) == len(set(after))
            assert len([r for r in store.records("hamilton") if r.person_id == lin_id]) == 1
            assert after[lin_id].first_seen == pytest.approx(before[lin_id].first_seen)
            page.wait_for_selector(f"{lin}[data-status=present]", timeout=30_000)
            assert page_statuses(page)[ids["Joe Biden"]] == "absent"

            # bad input from the dashboard: a roster naming people not enrolled, an overlapping session
            page.click("#start-box summary")
            page.fill("#start-form input[name=name]", "encore")
            page.fill("#start-form input[name=people]", "Lin-Manuel Miranda, Nobody Enrolled")
            page.click("#start-form button[type=submit]")
            page.wait_for_selector("#start-msg.error", timeout=30_000)
            assert "not enrolled: Nobody Enrolled" in page.inner_text("#start-msg")
            page.fill("#start-form input[name=people]", "Joe Biden")
            page.fill("#start-form input[name=cameras]", "cam0")
            page.click("#start-form button[type=submit]")
            page.wait_for_function("() => document.querySelector('#start-msg').textContent.includes('overlaps')",
                                   timeout=30_000)
            assert "overlaps session 'hamilton'" in page.inner_text("#start-msg")
            # stop from the dashboard: the session closes, the absent person stays absent
            page.click("#stop-btn")
            page.wait_for_selector("#session-state[data-state=closed]", timeout=30_000)
            assert store.get_session("hamilton").state() == "closed"
            assert page_statuses(page)[ids["Joe Biden"]] == "absent"

            # a browser without the token: a clear message, no data
            anon = browser.new_page()
            anon.goto(f"{base}/")
            anon.wait_for_selector("#auth-error:not([hidden])", timeout=30_000)
            assert "needs an access token" in anon.inner_text("#auth-error")
            assert anon.get_attribute("#conn", "data-state") == "unauthorized"
            status, body = http_get(f"{base}/api/attendance/report?session=hamilton", token=None)
            assert status == 401 and b"token" in body
            status, body = http_get(f"{base}/api/attendance/report?session=nope")
            assert status == 404 and b"Unknown attendance session 'nope'" in body
            browser.close()
    finally:
        run.stop()


def test_run_with_an_unknown_session_says_so(gallery_url, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "facestream", "run", str(HAMILTON), "--no-server", "--max-frames", "1",
         "--gallery", gallery_url, "--session", "no such session"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Unknown attendance session 'no such session'" in proc.stderr and "Traceback" not in proc.stderr


def test_blur_hides_faces_that_are_not_enrolled(tmp_path):
    """The page blurs unknown faces (and only those) when asked; served by the real server, no models."""
    import cv2
    import numpy as np
    from playwright.sync_api import sync_playwright

    from facestream.gallery.types import Person
    from facestream.stream.attendance import AttendanceMonitor
    from facestream.stream.attendance.web import AttendanceExtension
    from facestream.stream.config import AttendanceConfig, ServerConfig
    from facestream.stream.engine.faces import Faces, FrameResult

    store = open_attendance_store(f"sqlite:///{tmp_path}/g.db")
    people = [Person("p1", "Lin-Manuel Miranda", {"group": "h"})]
    monitor = AttendanceMonitor(store, AttendanceConfig(), people=lambda: people)
    monitor.start_session("blur", roster="group=h")
    server = StreamServer(ServerConfig(port=0, token=TOKEN, jpeg_fps=30),
                          stats=lambda: {"sources": {"cam0": {"fps": 12.5, "dropped": 7, "state": "running"}}},
                          extensions=[AttendanceExtension(monitor)]).start()
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)  # sharp noise: blur shows as lost contrast
    known, unknown = [40, 40, 200, 200], [400, 120, 560, 280]
    faces = Faces(xyxy=[known, unknown], score=[0.9, 0.9], track_id=np.array([1, 2]), identity=["p1", None],
                  name=["Lin-Manuel Miranda", "unknown"], similarity=np.array([0.95, np.nan], np.float32))
    message = FrameResult("cam0", 0, time.time(), faces, width=640, height=360).to_json()
    std_of = ("([x1, y1, x2, y2]) => { const c = document.querySelector('canvas[data-source=cam0]');"
              " const d = c.getContext('2d').getImageData(x1 + 10, y1 + 10, x2 - x1 - 20, y2 - y1 - 20).data;"
              " let s = 0, s2 = 0, n = 0; for (let i = 0; i < d.length; i += 4) { s += d[i]; s2 += d[i] * d[i]; n++; }"
              " return Math.sqrt(s2 / n - (s / n) ** 2); }")
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.port}/?token={TOKEN}&blur=1")
            page.wait_for_selector("#conn[data-state=open]", timeout=30_000)

            def drawn_with(_):
                server.publish(message, source="cam0", image=cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                return page.evaluate("() => Number(document.querySelector('canvas[data-source=cam0]')"
                                     "?.dataset.drawn || 0) > 1")

            wait_until(lambda: drawn_with(None), 20, "frames drawn")
            sharp, blurred = page.evaluate(std_of, known), page.evaluate(std_of, unknown)
            assert sharp > 30 and blurred < sharp / 3, (sharp, blurred)  # known stays sharp, unknown is blurred
            page.uncheck("#blur")
            assert page.evaluate(std_of, unknown) > 30
            assert page.inner_text("figure.camera figcaption").replace("\n", " ").endswith(
                "12.5 fps · dropped 7 · running")
            # a websocket without the token is refused at the handshake
            page2 = browser.new_page()
            page2.goto(f"http://127.0.0.1:{server.port}/?token=wrong")
            page2.wait_for_selector("#auth-error:not([hidden])", timeout=30_000)
            assert "The access token is wrong" in page2.inner_text("#auth-error")
            browser.close()
    finally:
        server.stop()


def test_dashboard_commands_get_the_session_checks_and_a_missing_session_is_404(tmp_path):
    """No browser: the websocket command and the HTTP API, on a real server over a real SQLite store."""
    import json

    from websockets.sync.client import connect

    from facestream.gallery.types import Person
    from facestream.stream.attendance import AttendanceMonitor
    from facestream.stream.attendance.web import AttendanceExtension
    from facestream.stream.config import AttendanceConfig, ServerConfig

    store = open_attendance_store(f"sqlite:///{tmp_path}/g.db")
    people = [Person("p1", "Lin-Manuel Miranda", {"group": "h"})]
    monitor = AttendanceMonitor(store, AttendanceConfig(), people=lambda: people)
    server = StreamServer(ServerConfig(port=0, token=TOKEN), extensions=[AttendanceExtension(monitor)]).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        status, body = http_get(f"{base}/api/attendance/report")
        assert status == 404 and b"No attendance sessions" in body
        with connect(f"ws://127.0.0.1:{server.port}/", additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:

            def command(**msg) -> dict:
                ws.send(json.dumps({"type": "attendance_start", "id": 1, **msg}))
                while (reply := json.loads(ws.recv(timeout=10)))["type"] != "attendance_reply":
                    pass
                return reply

            reply = command(name="x", people="Lin-Manuel Miranda", late_after_minutes=-5)
            assert not reply["ok"]
            assert "late_after_minutes: Input should be greater than or equal to 0" in reply["error"]
            reply = command(name="x", people="Lin-Manuel Miranda", duration_minutes=0)
            assert not reply["ok"] and "duration_minutes: Input should be greater than 0" in reply["error"]
            assert command(name="x", people="Lin-Manuel Miranda", late_after_minutes=2)["ok"]
        assert store.get_session("x").late_after_s == 120
        status, body = http_get(f"{base}/api/attendance?session=nope")
        assert status == 404 and b"Unknown attendance session 'nope'" in body
        status, body = http_get(f"{base}/api/attendance/report?session=x&format=pdf")
        assert status == 400 and b"Unknown report format" in body
    finally:
        server.stop()
        store.close()


def test_not_this_person_from_the_dashboard_and_undo(gallery_url, tmp_path):
    """Click Lin's box, "Not Lin-Manuel Miranda": the live view stops naming him and the gallery holds the
    negative; Undo: he is named again and the negative is gone. Then "This is…" on a face names it."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    run = Run(gallery_url, port, tmp_path / "run.log", session=None)
    base = f"http://127.0.0.1:{port}"
    lin = "Lin-Manuel Miranda"
    click_lin = f"""() => {{
        const c = document.querySelector('#cameras canvas');
        const f = JSON.parse(c.dataset.faces || '[]').find(f => f.name === '{lin}');
        if (!f) return null;
        const r = c.getBoundingClientRect();
        return [r.left + (f.box[0] + f.box[2]) / 2 * r.width / c.width,
                r.top + (f.box[1] + f.box[3]) / 2 * r.height / c.height];
    }}"""
    try:
        with sync_playwright() as pw, open_store(gallery_url) as store:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/?token={TOKEN}")
            page.wait_for_selector("#conn[data-state=open]", timeout=30_000)
            page.wait_for_function(click_lin, timeout=90_000)
            x, y = page.evaluate(click_lin) or (0, 0)
            page.mouse.click(x, y)
            page.wait_for_selector("#face-panel:not([hidden])", timeout=10_000)
            if lin not in page.inner_text("#face-info"):  # he moved between the read and the click: again
                page.wait_for_function(click_lin, timeout=90_000)
                x, y = page.evaluate(click_lin)
                page.mouse.click(x, y)
            assert lin in page.inner_text("#face-info")
            track = int(page.get_attribute("#face-panel", "data-track"))
            page.click("#not-btn")
            page.wait_for_selector("#corrections li[data-id^='not:']", timeout=30_000)
            assert len(store.negatives_of(lin)) == 1
            # that face, on the next frames (after the two already in flight reach the page), is unknown
            time.sleep(0.5)
            names = []
            deadline = time.time() + 3
            while time.time() < deadline:
                faces = json.loads(page.get_attribute("#cameras canvas", "data-faces") or "[]")
                names += [f["name"] for f in faces if f["track_id"] == track]
                time.sleep(0.05)
            assert names and set(names) == {"unknown"}, names
            page.click("#corrections li button")
            page.wait_for_selector("#corrections li.undone", timeout=30_000)
            assert store.negatives_of(lin) == []
            page.wait_for_function(f"() => document.querySelector('#cameras canvas').dataset.names.includes('{lin}')",
                                   timeout=60_000)
            assert "correction" in page.inner_text("#log")
            # a stranger's face offers "Enrol as new person" (not "Not ..."); the server answers in the panel
            click_stranger = click_lin.replace(f"f.name === '{lin}'", "f.name === 'unknown'")

            def picked_a_stranger() -> bool:  # faces move between the read and the click: try again then
                page.wait_for_function(click_stranger, timeout=90_000)
                x, y = page.evaluate(click_stranger) or (0, 0)
                page.mouse.click(x, y)
                return page.inner_text("#face-info").endswith("unknown")

            wait_until(picked_a_stranger, 60, "a click on an unknown face")
            assert page.is_visible("#enrol-form") and not page.is_visible("#not-btn")
            page.fill("#enrol-form input", "Stranger From The Dashboard")
            page.click("#enrol-form button")
            page.wait_for_function("() => { const t = document.querySelector('#face-msg').textContent;"
                                   " return t && !t.endsWith('…'); }", timeout=60_000)
            answer = page.inner_text("#face-msg")
            if answer.startswith("Enrolled"):  # some view of that track passed the checks
                assert store.get_person("Stranger From The Dashboard").n_embeddings >= 1
            else:  # the server's own reason, e.g. every view too small or turned
                assert any(why in answer for why in ("checks", "not known here", "no embedded view")), answer
            browser.close()
    finally:
        run.stop()


def test_the_page_asks_for_pictures_of_the_tiles_on_screen_only(tmp_path):
    """Issue 21, item 6: with many cameras the page shows a few; it asks the server for the JPEGs of those
    (so workers encode and gateways carry only them), and follows the scroll."""
    from playwright.sync_api import sync_playwright

    from facestream.stream.config import ServerConfig

    sources = {f"cam{i:02d}": {"state": "running"} for i in range(12)}
    server = StreamServer(ServerConfig(port=0, jpeg_fps=30), stats=lambda: {"sources": sources}).start()

    def asked() -> set[str] | None:
        clients = server.fanout.clients
        return clients[0].jpeg_sources if clients else None

    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 900, "height": 600})
            page.goto(f"http://127.0.0.1:{server.port}/")
            page.wait_for_selector("#conn[data-state=open]", timeout=30_000)
            wait_until(lambda: asked() and "cam00" in asked(), 20, "the first tiles asked for")
            assert "cam11" not in asked() and 0 < len(asked()) < 12
            assert server.jpeg_watched() == asked() and not server.wants_jpeg("cam11")
            page.evaluate("document.querySelector('figure[data-source=cam11]').scrollIntoView()")
            wait_until(lambda: asked() and "cam11" in asked() and "cam00" not in asked(), 20, "the scrolled-to tiles")
            browser.close()
    finally:
        server.stop()
