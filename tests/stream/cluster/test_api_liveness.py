"""POST /api/verify with a clip or frames: the liveness verdict beside the match, over real HTTP."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.attacks import render_attack
from bench.scenes import face_sources
from facestream.stream.engine.detect import FaceDetector
from tests.conftest import EXAMPLES
from tests.stream.cluster.test_api import client, gateway, photo  # noqa: F401 - the fixture
from tests.stream.live.test_recognizer import LIN, clip_frames

pytestmark = pytest.mark.slow

LIN_PHOTO = EXAMPLES / "Lin_Manuel_Miranda" / "lin-manuel-miranda.png"


def mp4(frames: list[np.ndarray], path) -> bytes:
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    for rgb in frames:
        out.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out.release()
    return path.read_bytes()


def jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def test_a_clip_of_lin_is_live_and_a_held_up_photo_is_not(gateway, tmp_path):  # noqa: F811
    clip = dict(clip_frames(every=1, limit=275))
    real = [clip[i] for i in range(211, 275)]  # the stage: Lin and others, turning and singing
    detector = FaceDetector()
    source = face_sources([(LIN, LIN_PHOTO)], detector)[0]
    attack = list(render_attack(source, "print", np.random.default_rng(11), seconds=2.0))
    with client(gateway) as c:
        r = c.post("/api/enroll", data={"name": LIN},
                   files=[("images", photo("Lin_Manuel_Miranda/lin-manuel-miranda.png"))])
        assert r.status_code == 200, r.text

        r = c.post("/api/verify", data={"person": LIN, "liveness": "true"},
                   files={"clip": ("lin.mp4", mp4(real, tmp_path / "real.mp4"), "video/mp4")})
        assert r.status_code == 200, r.text
        body = r.json()
        # live; verified exactly when the match holds (1:1 is strict: a studio photo against stage light)
        assert body["liveness"]["state"] == "live" and body["verified"] == body["same_person"], body["liveness"]
        assert body["name"] == LIN and len(body["views"]) >= 2 and body["frames"] == len(real)

        r = c.post("/api/verify", data={"person": LIN, "liveness": "true"},
                   files={"clip": ("photo.mp4", mp4(attack, tmp_path / "attack.mp4"), "video/mp4")})
        body = r.json()
        assert r.status_code == 200 and body["same_person"], body  # the photo IS Lin's face...
        assert body["liveness"]["state"] == "spoof" and not body["verified"]  # ...but not Lin in the room

        # the same attack as consecutive frames; liveness not required: verified by the match alone
        files = [("frames", (f"f{i:03d}.jpg", jpeg(f), "image/jpeg")) for i, f in enumerate(attack[:45])]
        r = c.post("/api/verify", data={"person": LIN, "liveness": "false"}, files=files)
        body = r.json()
        assert r.status_code == 200 and body["liveness"]["state"] == "spoof" and body["verified"], body

        # one photo cannot show liveness: a clear error, not a silent pass
        r = c.post("/api/verify", data={"person": LIN, "liveness": "true"},
                   files={"image": photo("Lin_Manuel_Miranda/lin-manuel-miranda.png")})
        assert r.status_code == 400 and "one photo" in r.json()["error"]
        r = c.post("/api/verify", data={"person": LIN},
                   files={"clip": ("junk.mp4", b"not a video at all", "video/mp4")})
        assert r.status_code == 400 and "clip" in r.json()["error"], r.text
