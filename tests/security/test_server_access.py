"""Who may watch the cameras: other web pages, DNS rebinding, tokens, the dashboard's cookie (issue 13, item 1).

Each test drives the real server over real sockets; the cross-site one a real browser."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from facestream.errors import FacestreamError
from facestream.stream.config import ServerConfig, load_config
from facestream.stream.serve.server import SESSION_COOKIE, StreamServer
from tests.conftest import free_port, launch_chromium


def get(url: str, headers: dict | None = None) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers, r.read()  # case-insensitive, as HTTP headers are
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


async def handshake(url: str, **headers) -> int:
    """The HTTP status a websocket handshake gets (101 when it is accepted)."""
    try:
        async with connect(url, additional_headers=headers) as ws:
            await ws.recv()
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.fixture
def server():
    srv = StreamServer(ServerConfig(port=0, allowed_origins=["https://dashboard.example.org"]), static_dir=None).start()
    yield srv
    srv.stop()


def test_another_web_page_cannot_open_the_websocket_or_read_the_api(server):
    """No token (the default on loopback): the Origin rule is what stops a page the operator opens elsewhere."""
    ws = f"ws://127.0.0.1:{server.port}/?frames=jpeg"
    assert asyncio.run(handshake(ws, Origin="http://evil.example")) == 403
    assert asyncio.run(handshake(ws, Origin="null")) == 403  # sandboxed iframes, file:// pages
    assert asyncio.run(handshake(ws, Origin=f"http://127.0.0.1:{server.port}")) == 101  # the dashboard itself
    assert asyncio.run(handshake(ws, Origin="https://dashboard.example.org")) == 101  # listed in allowed_origins
    assert asyncio.run(handshake(ws)) == 101  # scripts send no Origin (and need the token when one is set)
    status, _, body = get(f"http://127.0.0.1:{server.port}/stats", {"Origin": "http://evil.example"})
    assert status == 403 and b"not allowed" in body


def test_dns_rebinding_is_refused(server):
    """A page at evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example."""
    status, _, body = get(f"http://127.0.0.1:{server.port}/stats", {"Host": f"evil.example:{server.port}"})
    assert status == 403 and b"host 'evil.example' not allowed" in body
    # the client adds this Host to its own: two Host headers, refused by the HTTP parser (400) or by us (403)
    assert asyncio.run(handshake(f"ws://127.0.0.1:{server.port}/", Host=f"evil.example:{server.port}")) in (400, 403)
    assert get(f"http://localhost:{server.port}/stats")[0] == 200
    assert get(f"http://127.0.0.1:{server.port}/health", {"Host": "evil.example"})[0] == 200  # health checks


def test_no_listening_beyond_loopback_without_a_token_and_no_empty_token():
    with pytest.raises(FacestreamError, match="Refusing to listen on 0.0.0.0 without a token"):
        StreamServer(ServerConfig(host="0.0.0.0", port=0), static_dir=None).start()
    with pytest.raises(FacestreamError, match="empty or short token"):
        load_config(overrides=["server.token="], env={})
    with pytest.raises(FacestreamError, match="empty or short token"):
        load_config(env={"FACESTREAM__SERVER__TOKEN": ""})
    srv = StreamServer(ServerConfig(host="0.0.0.0", port=0, token="a-long-enough-token-0123"), static_dir=None).start()
    try:
        assert get(f"http://127.0.0.1:{srv.port}/stats")[0] == 401
        assert get(f"http://127.0.0.1:{srv.port}/stats?token=a-long-enough-token-0123")[0] == 401  # not in URLs
        assert get(f"http://127.0.0.1:{srv.port}/stats", {"Authorization": "Bearer a-long-enough-token-0123"})[0] == 200
    finally:
        srv.stop()


def test_the_token_is_traded_for_a_cookie_that_is_not_the_token():
    srv = StreamServer(ServerConfig(port=0, token="cookie-test-token-0123456")).start()
    base = f"http://127.0.0.1:{srv.port}"
    try:
        assert get(base + "/login")[0] == 401
        assert get(base + "/login", {"Authorization": "Bearer wrong-token-x"})[0] == 401
        status, headers, _ = get(base + "/login", {"Authorization": "Bearer cookie-test-token-0123456"})
        cookie = headers["Set-Cookie"]
        assert status == 204 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        name, value = cookie.split(";")[0].split("=", 1)
        assert name == f"{SESSION_COOKIE}_{srv.port}"  # bound to this server: cookies are not port-isolated
        assert "cookie-test-token" not in cookie and len(value) >= 64
        assert get(base + "/stats", {"Cookie": f"{name}={value}"})[0] == 200
        assert get(base + "/stats", {"Cookie": f"{name}=forged"})[0] == 401
        assert asyncio.run(handshake(f"ws://127.0.0.1:{srv.port}/", Cookie=f"{name}={value}")) == 101
        assert asyncio.run(handshake(f"ws://127.0.0.1:{srv.port}/")) == 401
    finally:
        srv.stop()


def test_a_real_browser_on_another_page_gets_nothing(tmp_path):
    """A page served from another origin tries what an attacker's page would: open the websocket for JPEGs,
    send attendance_stop, fetch /stats. The server refuses all of it."""
    from playwright.sync_api import sync_playwright

    srv = StreamServer(ServerConfig(port=0), stats=lambda: {"sources": {"cam0": {}}}).start()
    (tmp_path / "index.html").write_text(f"""<!doctype html><script>
      window.result = {{messages: 0, closed: false, fetched: null}};
      const ws = new WebSocket("ws://127.0.0.1:{srv.port}/?frames=jpeg");
      ws.onopen = () => ws.send(JSON.stringify({{type: "attendance_stop"}}));
      ws.onmessage = () => window.result.messages++;
      ws.onclose = ws.onerror = () => window.result.closed = true;
      fetch("http://127.0.0.1:{srv.port}/stats").then(r => r.text()).then(t => window.result.fetched = t,
                                                                         e => window.result.fetched = "blocked");
    </script>""")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page()
            page.goto(f"http://localhost:{evil.server_address[1]}/")
            page.wait_for_function("() => window.result.closed && window.result.fetched !== null", timeout=20_000)
            result = page.evaluate("() => window.result")
            browser.close()
        assert result["messages"] == 0 and result["fetched"] == "blocked", result
        srv.publish({"type": "frame", "source": "cam0"}, "cam0")
        assert srv.clients == 0 and srv.rejected >= 1
    finally:
        evil.shutdown()
        srv.stop()


def test_malformed_commands_get_a_message_and_the_connection_stays(server, caplog):
    async def scenario() -> list[dict]:
        replies = []
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.recv()  # hello
            for bad in ({"type": "subscribe", "sources": 5}, {"type": "subscribe", "frames": "gif"},
                        {"type": "feedback", "source": "cam0", "track_id": "x", "verdict": "not"},
                        {"type": "subscribe", "extra": 1}, [1, 2], "not json", {"type": "nope"}):
                await ws.send(bad if isinstance(bad, str) else json.dumps(bad))
                replies.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "subscribe", "sources": ["cam0"]}))
            replies.append(json.loads(await ws.recv()))
        return replies

    replies = asyncio.run(scenario())
    assert [r["type"] for r in replies[:3]] == ["error", "error", "feedback_reply"]
    assert "sources" in replies[0]["error"] and "frames" in replies[1]["error"]
    assert replies[2]["ok"] is False and "track_id" in replies[2]["error"]
    assert "extra" in replies[3]["error"]
    assert "JSON object" in replies[4]["error"] and "JSON object" in replies[5]["error"]
    assert "unknown command type 'nope'" in replies[6]["error"]
    assert replies[7] == {"type": "subscribed", "sources": ["cam0"], "frames": "none"}
    assert "Traceback" not in caplog.text


def _sign_in(base: str, token: str) -> tuple[str, str, str]:
    status, headers, _ = get(base + "/login", {"Authorization": f"Bearer {token}"})
    assert status == 204
    name, value = headers["Set-Cookie"].split(";")[0].split("=", 1)
    return name, value, headers["Set-Cookie"]


def test_sessions_are_random_expiring_and_end_at_logout():
    """Issue 22, item 1: a sign-in is a random server-side session with an expiry, not a token equivalent."""
    import urllib.request

    srv = StreamServer(ServerConfig(port=0, token="session-test-token-0123456789")).start()
    base = f"http://127.0.0.1:{srv.port}"
    try:
        name, first, cookie = _sign_in(base, "session-test-token-0123456789")
        _, second, _ = _sign_in(base, "session-test-token-0123456789")
        assert first != second and "Max-Age=" in cookie  # random per sign-in, expires
        assert get(base + "/stats", {"Cookie": f"{name}={first}"})[0] == 200
        req = urllib.request.Request(base + "/logout", method="POST", headers={"Cookie": f"{name}={first}"})
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 204
        assert get(base + "/stats", {"Cookie": f"{name}={first}"})[0] == 401  # revoked
        assert get(base + "/stats", {"Cookie": f"{name}={second}"})[0] == 200  # the other browser stays in
        expired = srv.access.new_session(ttl=-1)
        assert get(base + "/stats", {"Cookie": f"{name}={expired}"})[0] == 401
        forged = second.rsplit(".", 1)[0].rsplit(".", 1)[0] + ".9999999999." + second.rsplit(".", 1)[1]
        assert get(base + "/stats", {"Cookie": f"{name}={forged}"})[0] == 401  # a later expiry breaks the seal
    finally:
        srv.stop()


def test_a_neighbours_malformed_cookie_does_not_lock_the_operator_out():
    """Issue 22, item 2: another local service's cookie that SimpleCookie rejects must not hide ours."""
    srv = StreamServer(ServerConfig(port=0, token="lenient-cookie-token-0123456789")).start()
    base = f"http://127.0.0.1:{srv.port}"
    try:
        name, value, _ = _sign_in(base, "lenient-cookie-token-0123456789")
        for jar in (f"theme=dark mode; {name}={value}", f'a="unterminated; {name}={value}', f"x=1;;; {name}={value}"):
            assert get(base + "/stats", {"Cookie": jar})[0] == 200, jar
    finally:
        srv.stop()


def test_guessing_tokens_is_slowed_to_a_crawl():
    """Issue 22, item 4: wrong tokens from one address get 429 with Retry-After after a few, at /login too."""
    srv = StreamServer(ServerConfig(port=0, token="rate-limit-token-0123456789ab")).start()
    base = f"http://127.0.0.1:{srv.port}"
    try:
        codes = [get(base + "/login", {"Authorization": f"Bearer guess-{i:04d}-xxxxxxxx"})[0] for i in range(12)]
        assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
        status, headers, _ = get(base + "/stats", {"Authorization": "Bearer rate-limit-token-0123456789ab"})
        assert status == 429 and 0 < int(headers["Retry-After"]) <= 61  # the right token waits too: no oracle
        assert get(base + "/health")[0] == 200  # the health check stays open
    finally:
        srv.stop()
