"""Issue 22, item 4: the API's model work is limited per client (429 with Retry-After), other routes are not."""

from __future__ import annotations

import httpx

from facestream.stream.app import erase_everywhere
from facestream.stream.config import load_config
from facestream.stream.serve.recognition_api import build_api
from facestream.stream.serve.server import StreamServer


def test_recognition_requests_are_limited_per_client():
    config = load_config(overrides=["server.port=0", "server.api_requests_per_minute=3"], env={})
    server = StreamServer(config.server, static_dir=None, api=build_api(config, erase=erase_everywhere)).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as c:
            # three requests (malformed: the limit counts the attempt, before any model work)
            assert [c.post("/api/identify").status_code for _ in range(3)] == [422, 422, 422]
            r = c.post("/api/enroll")
            assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= 60
            assert "api_requests_per_minute" in r.json()["fix"]
            assert c.get("/api/people").status_code == 200  # reading is not model work: not limited
            assert c.post("/api/verify").status_code == 429
    finally:
        server.stop()
