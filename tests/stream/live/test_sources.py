"""Video sources on real files, folders and unreachable cameras/streams."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from facestream.errors import FacestreamError
from facestream.stream.config import SourceConfig
from facestream.stream.live.sources import Source, Watchdog, open_sources, redact, source_ids, source_kind
from tests.conftest import HAMILTON, free_port

N_FRAMES = 40


@pytest.fixture(scope="module")
def numbered_video(tmp_path_factory):
    """A real MJPG AVI whose frame k is uniformly grey level 5*k (decodable, order checkable)."""
    path = tmp_path_factory.mktemp("video") / "numbered.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for k in range(N_FRAMES):
        writer.write(np.full((48, 64, 3), 5 * k, np.uint8))
    writer.release()
    return path


def level(frame) -> int:
    return int(round(float(frame.image.mean()) / 5))


def drain(src: Source, delay: float = 0.0, limit: int = 10_000) -> list:
    frames = []
    while not src.ended and len(frames) < limit:
        f = src.read(timeout=2.0)
        if f is not None:
            frames.append(f)
            time.sleep(delay)
    return frames


def test_source_kinds(tmp_path):
    assert source_kind("0") == "webcam" and source_kind("/dev/video2") == "webcam"
    assert source_kind("rtsp://cam/stream") == "stream" and source_kind("https://x/mjpg") == "stream"
    assert source_kind(str(tmp_path)) == "folder" and source_kind("clip.mp4") == "file"
    assert redact("rtsp://admin:hunter2@10.0.0.5/live") == "rtsp://admin:***@10.0.0.5/live"


def test_file_delivers_every_frame_in_order_even_to_a_slow_consumer(numbered_video):
    with Source(SourceConfig(url=str(numbered_video)), "f") as src:
        assert not src.live
        frames = drain(src, delay=0.002)
    assert [f.index for f in frames] == list(range(N_FRAMES))
    assert [level(f) for f in frames] == list(range(N_FRAMES))
    assert src.dropped == 0 and src.state == "ended" and frames[0].image.shape == (48, 64, 3)
    assert all(f.source_id == "f" and f.decode_ms >= 0 for f in frames)


def test_realtime_file_is_live_newest_frame_wins_and_drops_are_counted(numbered_video):
    with Source(SourceConfig(url=str(numbered_video), realtime=True), "rt") as src:
        assert src.live
        frames = drain(src, delay=0.1)  # a consumer at ~10 fps behind a 30 fps "camera"
    assert 5 <= len(frames) < N_FRAMES
    assert src.dropped > 0 and src.dropped + len(frames) == N_FRAMES
    idx = [f.index for f in frames]
    assert idx == sorted(idx) and [level(f) for f in frames] == idx  # newest frames, still in order


def test_loop_restarts_the_file(numbered_video):
    with Source(SourceConfig(url=str(numbered_video), loop=True), "loop") as src:
        frames = drain(src, limit=N_FRAMES + 10)
    assert [f.index for f in frames] == list(range(N_FRAMES + 10))
    assert [level(f) for f in frames[N_FRAMES:]] == list(range(10))


def test_hamilton_clip_decodes_all_frames():
    with Source(SourceConfig(url=str(HAMILTON)), "ham") as src:
        assert (src.width, src.height) == (640, 360) and abs(src.fps_native - 29.97) < 0.1
        frames = drain(src)
    assert len(frames) == 275 and frames[-1].index == 274


def test_image_folder(tmp_path):
    for k, name in enumerate(["b.png", "a.jpg", "c.jpg"]):
        cv2.imwrite(str(tmp_path / name), np.full((30, 40, 3), 50 * (k + 1), np.uint8))
    (tmp_path / "d.jpg").write_bytes(b"not an image")  # skipped with a warning
    (tmp_path / "notes.txt").write_text("ignored")
    with Source(SourceConfig(url=str(tmp_path)), "dir") as src:
        frames = drain(src)
    assert [round(float(f.image.mean()) / 50) for f in frames] == [2, 1, 3]  # a.jpg, b.png, c.jpg


def test_missing_file_fails_at_once_with_a_clear_message(tmp_path):
    with pytest.raises(FacestreamError, match="Video file not found") as err:
        Source(SourceConfig(url=str(tmp_path / "nope.mp4"))).start()
    assert err.value.fix
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(FacestreamError, match="Cannot open video file"):
        Source(SourceConfig(url=str(tmp_path / "bad.mp4"), open_retries=5)).start()
    with pytest.raises(FacestreamError, match="no images"):
        Source(SourceConfig(url=str(tmp_path))).start()


def test_unreachable_stream_and_camera_fail_after_retries():
    url = f"rtsp://127.0.0.1:{free_port()}/nothing"
    with pytest.raises(FacestreamError, match=r"Cannot open stream .* after 3 attempts") as err:
        Source(SourceConfig(url=url, open_retries=2, max_backoff=0.05)).start()
    assert "reachable" in err.value.fix
    with pytest.raises(FacestreamError, match="Cannot open camera '97'"):
        Source(SourceConfig(url="97", open_retries=0)).start()


def test_open_sources_is_all_or_nothing(numbered_video, tmp_path):
    with pytest.raises(FacestreamError, match="share the id"):
        open_sources([SourceConfig(url=str(numbered_video), id="x"), SourceConfig(url=str(numbered_video), id="x")])
    with pytest.raises(FacestreamError, match="not found"):
        open_sources([SourceConfig(url=str(numbered_video)), SourceConfig(url=str(tmp_path / "missing.mp4"))])
    sources = open_sources([SourceConfig(url=str(numbered_video)), SourceConfig(url=str(numbered_video), id="b")])
    try:
        assert [s.id for s in sources] == ["cam0", "b"]
        dog = Watchdog(sources).start()  # file sources are not live: the watchdog leaves them alone
        assert all(len(drain(s)) == N_FRAMES for s in sources)
        dog.stop()
        assert all(s.reconnects == 0 for s in sources)
    finally:
        for s in sources:
            s.stop()


def test_source_ids_are_known_before_anything_opens(tmp_path):
    # `facestream run` names the cameras to attendance before the pipeline starts reading
    missing = str(tmp_path / "missing.mp4")
    assert source_ids([SourceConfig(url=missing), SourceConfig(url=missing, id="door")]) == ["cam0", "door"]
    with pytest.raises(FacestreamError, match="share the id"):
        source_ids([SourceConfig(url=missing, id="cam1"), SourceConfig(url=missing)])


class MjpegCamera(BaseHTTPRequestHandler):
    """An HTTP MJPEG camera (multipart/x-mixed-replace) that hangs up after 20 frames per connection."""

    connections = 0
    answer_after = 0.0  # seconds each connection waits before its first byte (a slow handshake)

    def do_GET(self) -> None:
        type(self).connections += 1
        time.sleep(self.answer_after)
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for k in range(20):
                ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), 10 * k, np.uint8))
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                 % len(buf) + buf.tobytes() + b"\r\n")
                time.sleep(1 / 30)
        except OSError:
            pass

    def log_message(self, *args) -> None:
        pass


def test_http_mjpeg_camera_reconnects_when_it_hangs_up():
    server = ThreadingHTTPServer(("127.0.0.1", 0), MjpegCamera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
    try:
        with Source(SourceConfig(url=url, open_retries=0, stall_timeout=2, max_backoff=0.2), "http") as src:
            assert src.live and src.kind == "stream"
            frames = []
            deadline = time.monotonic() + 60
            while (len(frames) < 30 or src.reconnects < 1) and time.monotonic() < deadline:
                f = src.read(timeout=0.5)
                if f is not None:
                    frames.append(f)
            assert len(frames) >= 30 and src.reconnects >= 1 and MjpegCamera.connections >= 2
            assert frames[0].image.shape == (48, 64, 3)
            assert [f.index for f in frames] == sorted(f.index for f in frames)
    finally:
        server.shutdown()


class SlowMjpegCamera(MjpegCamera):
    connections = 0
    answer_after = 2.5


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_slow_handshake_is_waited_for_not_taken_for_a_stall():
    """Connecting takes longer than the stall timeout: the watchdog must let each attempt finish.

    A watchdog that ran the stall clock during a connection attempt would abandon
    every attempt after ``stall_timeout`` and the source would never come back.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowMjpegCamera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
    config = SourceConfig(url=url, open_retries=0, stall_timeout=1.0, open_timeout=10.0, max_backoff=0.2)
    try:
        with Source(config, "slow") as src:
            dog = Watchdog([src]).start()
            try:
                frames = []
                deadline = time.monotonic() + 60
                while len(frames) < 45 and time.monotonic() < deadline:  # 20 per connection: three connections
                    f = src.read(timeout=0.5)
                    if f is not None:
                        frames.append(f)
            finally:
                dog.stop()
            assert len(frames) >= 45, f"only {len(frames)} frames; reconnects={src.reconnects}, {src.last_error}"
            # each hang-up costs one reconnect; none was spent abandoning a connection attempt
            assert SlowMjpegCamera.connections <= src.reconnects + 1
    finally:
        server.shutdown()
