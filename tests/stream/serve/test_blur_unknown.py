"""``server.blur_unknown``: strangers' faces are pixelated in every picture that leaves the process."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import cv2
import numpy as np
from websockets.asyncio.client import connect

from facestream.stream.config import ServerConfig
from facestream.stream.engine.faces import Faces, FrameResult
from facestream.stream.serve.server import StreamServer
from tests.stream.serve.test_server import wait_clients

KNOWN, STRANGER = [10, 20, 110, 140], [180, 60, 300, 200]


def noise_frame(seed: int = 3) -> np.ndarray:
    """Sharp noise: pixelation shows as lost contrast."""
    return np.random.default_rng(seed).integers(0, 256, (240, 320, 3), dtype=np.uint8)


def known_and_stranger() -> Faces:
    return Faces(xyxy=[KNOWN, STRANGER], score=[0.9, 0.9], track_id=np.array([7, 8]), name=["Ada", "unknown"],
                 identity=["p1", None], similarity=np.array([0.95, np.nan], np.float32))


def contrast(img: np.ndarray, box: list[int]) -> float:
    x1, y1, x2, y2 = box
    return float(img[y1 + 5:y2 - 5, x1 + 5:x2 - 5].astype(np.float32).std())


def test_viewers_jpeg_has_strangers_pixelated_and_known_faces_sharp():
    """With ``server.blur_unknown`` the viewer's JPEG has unknown faces pixelated and known ones sharp."""
    image = noise_frame()
    message = FrameResult("cam0", 0, time.time(), known_and_stranger(), {"total": 1.0}, 320, 240).to_json()
    original = image.copy()

    async def viewer_jpeg(blur: bool) -> np.ndarray:
        srv = StreamServer(ServerConfig(port=0, jpeg_fps=0.5, jpeg_quality=95, blur_unknown=blur),
                           static_dir=None).start()
        try:
            async with connect(f"ws://127.0.0.1:{srv.port}/?frames=jpeg") as viewer:
                await viewer.recv()
                await wait_clients(srv, 1)
                srv.publish(message, "cam0", image=image)
                got = json.loads(await viewer.recv())
        finally:
            srv.stop()
        assert got["faces"][1]["name"] == "unknown"
        return cv2.imdecode(np.frombuffer(base64.b64decode(got["jpeg"]), np.uint8), cv2.IMREAD_COLOR)

    plain, hidden = asyncio.run(viewer_jpeg(False)), asyncio.run(viewer_jpeg(True))
    assert contrast(plain, STRANGER) > 50 and contrast(hidden, KNOWN) > 50
    assert contrast(hidden, STRANGER) < contrast(plain, STRANGER) / 3
    assert np.array_equal(image, original)  # the caller's frame (also recorded, also drawn) is left untouched


def test_recorded_video_has_strangers_pixelated(tmp_path):
    from facestream.stream.live.outputs import VideoRecorder
    from facestream.stream.live.pipeline import LiveResult

    rgb = noise_frame(5)

    def record(blur: bool) -> np.ndarray:
        out = tmp_path / f"out_{blur}.avi"
        recorder = VideoRecorder(str(out), [], blur_unknown=blur)
        for k in range(3):
            recorder.on_result(LiveResult("cam0", k, time.time(), known_and_stranger(), width=320, height=240), rgb)
        recorder.close()
        cap = cv2.VideoCapture(str(recorder.file_for("cam0")))
        ok, frame = cap.read()
        cap.release()
        assert ok and frame.shape == (240, 320, 3)
        return frame

    plain, hidden = record(False), record(True)
    assert contrast(plain, STRANGER) > 30 and contrast(hidden, KNOWN) > 30
    assert contrast(hidden, STRANGER) < contrast(plain, STRANGER) / 3


def test_recorder_that_cannot_open_its_file_says_so_once(tmp_path, caplog):
    """An unwritable --record file used to raise (a traceback) on every frame; now one error, then silence."""
    import logging

    from facestream.stream.live.outputs import VideoRecorder
    from facestream.stream.live.pipeline import LiveResult

    recorder = VideoRecorder(str(tmp_path / "taken.mp4"), [])
    recorder.file_for("cam0").mkdir()  # a folder where the file should go: no writer can open it
    with caplog.at_level(logging.ERROR, logger="facestream.stream.live.outputs"):
        for k in range(5):
            recorder.on_result(LiveResult("cam0", k, time.time(), known_and_stranger(), width=320, height=240),
                               noise_frame())
    recorder.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot record cam0" in errors[0].getMessage() and errors[0].exc_info is None
