"""The HTTP API on a running gateway, with a real HTTP client over a real socket and a real Redis gallery."""

from __future__ import annotations

import io
import zlib

import httpx
import pytest

from facestream.stream.app import App
from facestream.stream.cluster.gateway import Gateway
from facestream.stream.config import load_config
from tests.conftest import EXAMPLES, GROUPS

TOKEN = "api-test-token-0123456789"


@pytest.fixture
def gateway(redis_url):
    config = load_config(overrides=[f"gallery.url={redis_url}", "server.port=0", f"server.token={TOKEN}"], env={})
    with App(config) as app:  # the gateway as `facestream gateway` builds and stops it
        yield app.gateway().start()


def client(gw: Gateway, token: str | None = TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{gw.server.port}", headers=headers, timeout=120)


def photo(rel: str) -> tuple[str, bytes, str]:
    path = EXAMPLES / rel
    return path.name, path.read_bytes(), "image/jpeg"


def png_bomb(side: int = 20000) -> bytes:
    """A tiny PNG that claims side x side grey pixels (about 400 KB on the wire at 20000 px)."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = zlib.compress(b"\x00" * (side + 1) * 64, 9)  # a few rows; the header is what counts
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def test_enrol_identify_verify_list_and_delete(gateway):
    with client(gateway) as c:
        r = c.post("/api/enroll", data={"name": "Barack Obama", "metadata": '{"group": "us"}'},
                   files=[("images", photo("Barack_Obama/obama.jpg"))])
        assert r.status_code == 200, r.text
        assert r.json()["images"][0]["verdict"] == "enrolled" and r.json()["person"]["metadata"] == {"group": "us"}
        assert c.post("/api/enroll", data={"name": "Joe Biden"},
                      files=[("images", photo("Joe_Biden/biden.jpg"))]).status_code == 200

        group = (GROUPS / "obama_and_biden.jpg").read_bytes()
        r = c.post("/api/identify", files={"image": ("group.jpg", group, "image/jpeg")})
        assert r.status_code == 200, r.text
        faces = r.json()["faces"]  # the two of them, and a third person in the background
        named = {f["name"]: f for f in faces if f["name"] != "unknown"}
        assert set(named) == {"Barack Obama", "Joe Biden"} and len(faces) == 3
        assert all(len(f["box"]) == 4 and f["similarity"] > 0.9 and "far" in f for f in named.values())

        r = c.post("/api/verify", files={"image": photo("Barack_Obama/obama2.jpg")}, data={"person": "Barack Obama"})
        assert r.status_code == 200 and r.json()["same_person"] is True, r.text
        r = c.post("/api/verify", files={"image": photo("Barack_Obama/obama2.jpg"),
                                         "image2": photo("Joe_Biden/biden.jpg")})
        assert r.status_code == 200 and r.json()["same_person"] is False, r.text

        people = c.get("/api/people").json()
        assert [p["name"] for p in people] == ["Barack Obama", "Joe Biden"]
        obama = people[0]["id"]
        assert c.get(f"/api/people/{obama}").json()["name"] == "Barack Obama"
        r = c.delete(f"/api/people/{obama}")
        assert r.status_code == 200 and r.json()["name"] == "Barack Obama"
        assert c.get(f"/api/people/{obama}").status_code == 404
        r = c.post("/api/identify", files={"image": ("group.jpg", group, "image/jpeg")})
        assert sorted(f["name"] for f in r.json()["faces"]) == ["Joe Biden", "unknown", "unknown"]  # erased


def test_openapi_and_docs_are_served(gateway):
    with client(gateway, token=None) as c:
        spec = c.get("/api/openapi.json").json()
        assert {"/identify", "/verify", "/enroll", "/people", "/people/{ref}", "/attendance"} <= set(spec["paths"])
        assert "HTTPBearer" in spec["components"]["securitySchemes"]
        docs = c.get("/api/docs")
        assert docs.status_code == 200 and "/api/docs/static/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text.lower() and "default-src 'self'" in docs.headers["content-security-policy"]
        js = c.get("/api/docs/static/swagger-ui-bundle.js")
        assert js.status_code == 200 and len(js.content) > 1_000_000  # shipped in the package, not a CDN
        assert c.get("/api/docs/static/..%2F..%2Fserver.py").status_code == 404


def test_token_and_origin_rules_hold_for_the_api(gateway):
    with client(gateway, token=None) as anon:
        r = anon.get("/api/people")
        assert r.status_code == 401 and "token" in r.json()["error"]
        assert anon.post("/api/identify", files={"image": photo("Joe_Biden/biden.jpg")}).status_code == 401
    with client(gateway, token="wrong-token-0123456789abc") as wrong:
        assert wrong.get("/api/people").status_code == 401
    with client(gateway) as c:
        r = c.get("/api/people", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "not allowed" in r.json()["error"]
        r = c.get("/api/people", headers={"Host": "evil.example"})
        assert r.status_code == 403


def test_bad_and_oversized_uploads_get_one_clear_error(gateway):
    with client(gateway) as c:
        r = c.post("/api/identify", files={"image": ("x.jpg", b"this is not an image", "image/jpeg")})
        assert r.status_code == 400 and "image" in r.json()["error"].lower() and r.json()["fix"], r.text
        r = c.post("/api/identify", files={"image": ("empty.jpg", b"", "image/jpeg")})
        assert r.status_code == 400 and "empty" in r.json()["error"]
        r = c.post("/api/identify", files={"image": ("bomb.png", png_bomb(), "image/png")})
        assert r.status_code == 400 and "50 Mpx" in r.json()["error"], r.text
        big = io.BytesIO(b"\xff" * (26 * 1024 * 1024))
        r = c.post("/api/identify", files={"image": ("big.jpg", big, "image/jpeg")})
        assert r.status_code == 413 and "larger than 25 MB" in r.json()["error"]
        r = c.post("/api/verify", files={"image": photo("Joe_Biden/biden.jpg")})
        assert r.status_code == 400 and "image2" in r.json()["error"]
        r = c.post("/api/identify")
        assert r.status_code == 422 and "image" in r.json()["error"]
        r = c.get("/api/people/nobody-here")
        assert r.status_code == 404 and "No person" in r.json()["error"]
        r = c.post("/api/enroll", data={"name": "Someone", "metadata": "[1, 2"},
                   files=[("images", photo("Joe_Biden/biden.jpg"))])
        assert r.status_code == 400 and "metadata" in r.json()["error"]
    # the gateway still serves after all that
    with client(gateway) as c:
        assert c.get("/api/people").status_code == 200
