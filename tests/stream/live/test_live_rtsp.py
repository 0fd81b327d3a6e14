"""End to end: the Hamilton clip through a real RTSP server, the live pipeline and a real websocket client.

The RTSP server is GStreamer's (``tests/stream/rtsp_server.py`` under the system
python); the gallery is a real SQLite store with Lin-Manuel Miranda enrolled from
his photo; results are read back by a websocket client over a real socket.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import signal
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from facestream.stream.config import SourceConfig, load_config
from facestream.stream.live.pipeline import Pipeline
from facestream.stream.serve.server import StreamServer
from tests.conftest import EXAMPLES, HAMILTON, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.slow  # end-to-end: processes, browsers, servers (`make test-fast` skips it)

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")
LIN = "Lin-Manuel Miranda"


class RtspServer:
    """``rtsp_server.py`` as a subprocess on a fixed port, so it can be killed and started again."""

    def __init__(self, video: Path):
        self.video = video
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.video), str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout) or self.proc.stdout.readline().strip() != "READY":
            self.kill()
            pytest.fail(f"RTSP server did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def rtsp():
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail("the system python with GStreamer's RTSP server is missing; run `bash .ci/setup`")
    server = RtspServer(HAMILTON)
    server.start()
    yield server
    server.kill()


class WsCollector:
    """A real websocket client in its own thread that keeps every message it receives."""

    def __init__(self, url: str, token: str | None = None):
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.messages: list[dict] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> WsCollector:
        self._thread.start()
        assert self.connected.wait(10), "websocket client could not connect"
        return self

    async def _run(self) -> None:
        from websockets.asyncio.client import connect

        async with connect(self.url, additional_headers=self.headers) as ws:
            self.connected.set()
            while not self._stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.2)
                except asyncio.TimeoutError:
                    continue
                self.messages.append(json.loads(raw))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def frames(self, source: str) -> list[dict]:
        return [m for m in self.messages if m.get("type") == "frame" and m["source"] == source]




@pytest.fixture(scope="module")
def lin_matcher(tmp_path_factory, analyzer):
    """A real SQLite gallery with Lin-Manuel Miranda enrolled from one photo, and its matcher."""
    from facestream.gallery import open_store
    from facestream.gallery.matcher import Matcher
    from facestream.gallery.types import NewEmbedding, content_hash
    from facestream.stream.engine.imageio import load_image

    photo = EXAMPLES / "Lin_Manuel_Miranda" / "lin-manuel-miranda.png"
    faces = analyzer.analyze(load_image(photo))
    assert len(faces) >= 1
    biggest = int((faces.width * faces.height).argmax())
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('gallery') / 'gallery.db'}")
    store.enroll(LIN, [NewEmbedding(faces.embedding[biggest], analyzer.model_id, content_hash(photo.read_bytes()),
                                    source=str(photo))])
    matcher = Matcher(store, analyzer.model_id, analyzer.threshold)
    yield matcher
    matcher.close()
    store.close()


@contextmanager
def live(sources: list[SourceConfig], analyzer, matcher):
    """The pipeline on ``sources`` behind a real websocket server, with a real client collecting everything."""
    config = load_config(overrides=["server.port=0", "server.stats_every=0"])
    with StreamServer(config.server, static_dir=None) as server:
        pipeline = Pipeline(config, sources, analyzer=analyzer, matcher=matcher)
        server.attach(pipeline)
        client = WsCollector(f"ws://127.0.0.1:{server.port}/").start()
        try:
            with pipeline:
                yield pipeline, client
        finally:
            client.stop()


def test_rtsp_and_file_recognise_lin_manuel_miranda(rtsp, analyzer, lin_matcher):
    sources = [SourceConfig(url=str(HAMILTON), id="file"), SourceConfig(url=rtsp.url, id="rtsp")]
    looks: list = []  # what listeners get besides the JSON: each face's appearance embedding
    with live(sources, analyzer, lin_matcher) as (pipeline, client):
        pipeline.add_listener(lambda result, rgb: looks.append(result.faces.embedding))
        assert pipeline.workers[0].done.wait(300), "the file did not finish"
        # keep going until the RTSP source has shown one whole loop of the clip
        wait_until(lambda: pipeline.source("rtsp").frames_read >= 300, 120, "a full loop over RTSP")
        wait_until(lambda: len(client.frames("file")) >= 275, 30, "every file result on the websocket")
    stats = pipeline.stats()["sources"]
    assert stats["file"]["processed"] == 275 and stats["file"]["dropped"] == 0

    by_frame = {m["frame"]: m for m in client.frames("file")}
    assert sorted(by_frame) == list(range(275))
    detected = [by_frame[k] for k in range(100, 201) if any(f["box"][2] - f["box"][0] >= 40
                                                            for f in by_frame[k]["faces"])]
    named = [m for m in detected if any(f["name"] == LIN for f in m["faces"])]
    assert len(detected) >= 50, f"Lin's face found in only {len(detected)} of frames 100-200"
    assert len(named) >= 0.9 * len(detected), f"named in {len(named)} of {len(detected)} frames"
    for m in named:
        assert sum(f["name"] == LIN for f in m["faces"]) == 1
    # frames of other people (the pianist in profile, the audience with the Obamas) never carry his name
    for k in list(range(20, 81)) + list(range(220, 275)):
        assert all(f["name"] != LIN for f in by_frame[k]["faces"]), f"frame {k} names someone else as him"
    face = next(f for m in named for f in m["faces"] if f["name"] == LIN)
    assert face["person_id"] and face["similarity"] >= analyzer.threshold and face["age_frames"] >= 1
    assert {"box", "score", "track_id", "age_s", "votes", "embedded"} <= set(face)
    # the RTSP copy: results arrived over the websocket, and he is named there as well
    rtsp_frames = client.frames("rtsp")
    assert len(rtsp_frames) >= 100
    assert any(f["name"] == LIN for m in rtsp_frames for f in m["faces"])
    events = [m for m in client.messages if m.get("type") == "event" and m["source"] == "file"]
    appeared = [e for e in events if e["event"] == "person_appeared"]
    assert appeared and all(e["name"] == LIN for e in appeared)
    assert any(e["event"] == "person_left" and e["name"] == LIN for e in events)
    looks = [e for e in looks if e is not None]
    assert looks and {e.shape[1] for e in looks} == {128}
    assert any(np.isfinite(e).all(axis=1).any() for e in looks)
    # embedding ran only for some faces, not every face of every frame (the point of tracking)
    assert stats["file"]["embedded"] < stats["file"]["faces"] / 2


def test_rtsp_outage_reconnects_while_another_source_keeps_flowing(rtsp, analyzer):
    sources = [
        SourceConfig(url=rtsp.url, id="rtsp", stall_timeout=1.0, max_backoff=0.5),
        SourceConfig(url=str(HAMILTON), id="other", realtime=True, loop=True),
    ]
    with live(sources, analyzer, None) as (pipeline, client):
        cam, other = pipeline.source("rtsp"), pipeline.source("other")
        wait_until(lambda: len(client.frames("rtsp")) >= 30, 60, "RTSP results")
        rtsp.kill()
        wait_until(lambda: cam.state == "reconnecting", 30, "the outage to be noticed")
        during_rtsp = len(client.frames("rtsp"))
        processed_at_outage = pipeline.workers[0].processed
        other_before = len(client.frames("other"))
        # the outage lasts until the second source has delivered plenty more results
        wait_until(lambda: len(client.frames("other")) > other_before + 30, 60,
                   "the second source to keep flowing during the outage")
        assert cam.state == "reconnecting" and cam.reconnects >= 1
        assert pipeline.workers[0].processed <= processed_at_outage + 2  # at most frames in flight
        rtsp.start()
        wait_until(lambda: len(client.frames("rtsp")) >= during_rtsp + 30, 60, "RTSP results after restart")
        assert cam.reconnects >= 1 and other.reconnects == 0
        # a server that hangs (connection open, nothing sent) is caught by the stall timeout
        reconnects = cam.reconnects
        rtsp.proc.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: cam.reconnects > reconnects, 30, "the stall to be noticed")
        finally:
            rtsp.proc.send_signal(signal.SIGCONT)
        after_stall = len(client.frames("rtsp"))
        wait_until(lambda: len(client.frames("rtsp")) >= after_stall + 30, 60, "RTSP results after the stall")
    stats = pipeline.stats()["sources"]
    assert stats["rtsp"]["reconnects"] >= 1 and stats["rtsp"]["state"] in ("running", "stopped")
    indices = [m["frame"] for m in client.frames("rtsp")]
    assert indices == sorted(indices)  # the receiver's count goes on across the reconnect


def test_a_listener_attached_before_start_sees_frame_0_and_its_user_error_is_logged_once(analyzer, caplog):
    """A FacestreamError from a listener is one clear log line, not a traceback per frame."""
    import logging

    from facestream.errors import FacestreamError

    seen: list[int] = []

    def broken(result, rgb) -> None:
        seen.append(result.frame_index)
        raise FacestreamError("Cannot write the thing.", "Fix the thing.")

    config = load_config(overrides=["server.stats_every=0"])
    pipeline = Pipeline(config, [SourceConfig(url=str(HAMILTON))], analyzer=analyzer, max_frames=5)
    pipeline.add_listener(broken)
    with caplog.at_level(logging.ERROR, logger="facestream.stream.live.pipeline"), pipeline:
        assert pipeline.wait(60)
    assert seen == list(range(5))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "Cannot write the thing. Fix the thing." in errors[0].getMessage()
    assert errors[0].exc_info is None


def test_cli_run_writes_jsonl_video_and_attendance(tmp_path, lin_matcher, capsys):
    """``facestream run`` on the clip: JSON lines, the annotated video, attendance in the gallery's store."""
    import cv2

    from facestream.stream.attendance import open_attendance_store
    from facestream.stream.cli import main

    url = lin_matcher.store.url
    jsonl, video = tmp_path / "out.jsonl", tmp_path / "out.mp4"
    argv = ["run", str(HAMILTON), "--gallery", url, "--jsonl", str(jsonl), "--record", str(video),
            "--max-frames", "30", "--port", "0", "--set", "attendance.min_frames=3"]
    assert main(argv) == 0
    # 30 frames are too few for a verdict (the clip opens on Lin at 45 px), but the summary says so
    assert "liveness (report) of named tracks: 0 live, 0 spoof suspected, 1 undecided" in capsys.readouterr().out
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    frames = [m for m in lines if m["type"] == "frame"]
    assert [m["frame"] for m in frames] == list(range(30))
    assert any(f["name"] == LIN for m in frames[:15] for f in m["faces"])  # the wide shot opens on him
    assert any(m["type"] == "event" and m["event"] == "person_appeared" for m in lines)
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 30 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640
    store = open_attendance_store(url)
    records = [r for s in store.sessions() for r in store.records(s.name)]
    assert [r.name for r in records] == [LIN]
    assert main(["run", str(tmp_path / "missing.mp4"), "--gallery", url, "--no-server"]) == 2
