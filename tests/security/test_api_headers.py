"""Issue 22, items 10 and 11 on the HTTP API: every answer with faces or names is no-store, unframeable,
unsniffable and same-origin only; a 2x20000 strip is a clear 4xx, not a 500."""

from __future__ import annotations

import cv2
import numpy as np

from tests.stream.cluster.test_api import client, gateway, photo  # noqa: F401 (the fixture)

WANTED = {"cache-control": "no-store", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
          "cross-origin-resource-policy": "same-origin"}


def test_api_answers_carry_the_security_headers(gateway):  # noqa: F811
    with client(gateway) as c:
        answers = [c.post("/api/enroll", data={"name": "Barack Obama"},
                          files=[("images", photo("Barack_Obama/obama.jpg"))]),
                   c.post("/api/identify", files={"image": photo("Barack_Obama/obama.jpg")}),
                   c.get("/api/people"), c.get("/api/openapi.json"), c.get("/api/people/nobody-here")]
        for r in answers:
            for key, value in WANTED.items():
                assert r.headers.get(key) == value, (r.url, key, r.headers)
            assert "frame-ancestors" in r.headers.get("content-security-policy", ""), r.url


def test_a_strip_image_is_a_clear_client_error(gateway):  # noqa: F811
    ok, png = cv2.imencode(".png", np.full((2, 20000, 3), 200, np.uint8))
    with client(gateway) as c:
        r = c.post("/api/identify", files={"image": ("strip.png", png.tobytes(), "image/png")})
    assert 400 <= r.status_code < 500 and "strip" in r.text, (r.status_code, r.text)
