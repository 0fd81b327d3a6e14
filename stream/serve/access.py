"""Who may ask: the access rules every HTTP and websocket request meets before any route runs.

:class:`Access` holds the rules (the ``Host`` against DNS rebinding, the ``Origin``
against other web pages, the token, dashboard sessions, per-client limits on wrong
tokens and on model work); :class:`Guard` is the ASGI middleware that applies them
and adds the security headers to every answer. The server (:mod:`.server`) mounts it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.requests import cookie_parser
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from facestream import wire
from facestream.stream.config import ServerConfig
from facestream.stream.serve.rate_limit import WindowLimit

SESSION_COOKIE = "facestream_session"  # + "_<port>": cookies are not port-isolated, this server's name is
SESSION_TTL = 12 * 3600.0  # seconds a dashboard sign-in lasts
FAILED_AUTH_LIMIT = 10  # wrong tokens one client may send per window before it must wait (429, Retry-After)
FAILED_AUTH_WINDOW = 60.0  # seconds
MAX_SESSIONS = 10000  # sign-outs remembered at once (bounded memory whoever signs out)
SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                    "Referrer-Policy": "no-referrer"}
# Every HTTP answer gets these unless its route set its own (the API's JSON too: faces and names are never
# cached, framed, sniffed or read by another origin's page; a route with a fuller CSP keeps it).
DEFAULT_HEADERS = {**SECURITY_HEADERS, "Content-Security-Policy": "frame-ancestors 'none'",
                   "Cross-Origin-Resource-Policy": "same-origin"}
# API routes that run a model (seconds of CPU each): limited per client address
MODEL_ROUTES = frozenset({"/api/identify", "/api/verify", "/api/enroll"})
# what needs no token: the health check, the dashboard's files (no data in them), the API's description
OPEN_PATHS = ("/api/openapi.json", "/api/docs", "/api/docs/oauth2-redirect")


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine only (127.0.0.0/8, ::1, localhost)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with the security headers (finite numbers only, as every message we write)."""
    out = Response(wire.dumps(obj, default=str).encode(), status, {**SECURITY_HEADERS, **(headers or {})},
                   media_type="application/json")
    if status == 401:
        out.headers["WWW-Authenticate"] = 'Bearer realm="facestream"'
    return out


class Access:
    """Who may ask: the Host and Origin rules and the token, for HTTP and websocket requests alike."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.rejected = 0
        self.cookie_name = SESSION_COOKIE  # the server adds its port once bound
        self._revoked: dict[str, float] = {}  # session ids signed out (insertion order = age)
        self._failures = WindowLimit(FAILED_AUTH_LIMIT, FAILED_AUTH_WINDOW)
        self._api = WindowLimit(self.config.api_requests_per_minute, 60.0)
        self._lock = threading.Lock()

    # -- guessing: a client that keeps sending wrong tokens waits -------------------------------------
    def failed(self, scope: Scope) -> None:
        """Count one wrong or missing token from this client."""
        self._failures.hit(client_address(scope))

    def retry_after(self, scope: Scope) -> int:
        """Seconds this client must wait before its token is looked at again (0 = it may ask now)."""
        return self._failures.wait(client_address(scope))

    # -- model work: identify, verify, enrol cost seconds of CPU each -----------------------------------
    def api_wait(self, scope: Scope) -> int:
        """Counts one API request that runs a model; seconds to wait when the client is over its limit."""
        client = client_address(scope)
        wait = self._api.wait(client)
        if not wait:
            self._api.hit(client)
        return wait

    # -- dashboard sessions: random, expiring, revocable ------------------------------------------
    # A session is "<random id>.<expiry>.<HMAC(token, id.expiry)>": random per sign-in, worthless after its
    # expiry, after logout (the id is revoked) and after the token changes; signed rather than only kept
    # in memory so that a restarted server keeps its signed-in dashboards.
    def new_session(self, ttl: float = SESSION_TTL) -> str:
        body = f"{secrets.token_hex(16)}.{int(time.time() + ttl)}"
        return f"{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return hmac.new((self.config.token or "").encode(), f"facestream session {body}".encode(),
                        hashlib.sha256).hexdigest()

    def end_session(self, value: str) -> None:
        with self._lock:
            if len(self._revoked) >= MAX_SESSIONS:  # bounded: the oldest revocations have expired by then
                self._revoked.pop(next(iter(self._revoked)))
            self._revoked[value.split(".", 1)[0]] = time.time()

    def session_of(self, scope: Scope) -> str | None:
        """This server's valid session from the request's cookies. Parsed leniently (Starlette's parser):
        a neighbour's malformed cookie never hides ours."""
        header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"cookie"), "")
        value = cookie_parser(header).get(self.cookie_name, "")
        parts = value.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(parts[2].encode(), self._sign(body).encode()) or int(parts[1]) <= time.time():
            return None
        with self._lock:
            return None if parts[0] in self._revoked else value

    def refusal(self, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict] | None:
        """(403, why) for a request from another web page (``Origin``) or for another host name (DNS rebinding).

        Browsers send ``Origin`` with every websocket handshake and cross-site request; a page
        the operator opens elsewhere must not watch the cameras. Scripts send none and need the
        token when one is set. Two ``Host`` or ``Origin`` headers are refused, never guessed at.
        """
        hosts = [v.decode("latin-1") for k, v in headers if k.lower() == b"host"]
        origins = [v.decode("latin-1") for k, v in headers if k.lower() == b"origin"]
        if len(hosts) != 1 or len(origins) > 1:
            return 403, {"error": "one Host header (and at most one Origin) expected"}
        host_header = hosts[0]
        try:
            hostname = (urlsplit("//" + host_header).hostname or "").lower()
        except ValueError:
            hostname = ""
        allowed = {h.lower() for h in self.config.allowed_hosts}
        if (is_loopback(self.config.host) or allowed) and hostname not in allowed and not is_loopback(hostname):
            return 403, {"error": f"host {hostname or '(none)'!r} not allowed",
                         "fix": "open it as http://127.0.0.1:PORT/, or list the name in server.allowed_hosts"}
        if origins:
            origin = origins[0]
            try:
                same = urlsplit(origin).netloc.lower() == host_header.lower() and origin != "null"
            except ValueError:
                same = False
            if not same and origin.rstrip("/") not in {o.rstrip("/") for o in self.config.allowed_origins}:
                return 403, {"error": f"requests from the page {origin!r} are not allowed",
                             "fix": "list it in server.allowed_origins if it should be"}
        return None

    @staticmethod
    def token_in_url(scope: Scope) -> bool:
        return "token" in parse_qs(scope.get("query_string", b"").decode("latin-1"))

    def authorized(self, scope: Scope) -> bool:
        """The token, from ``Authorization: Bearer`` or the dashboard's session cookie. Never from the URL:
        proxies and servers log query strings (``?token=`` is refused with a hint, see :meth:`token_in_url`)."""
        token = self.config.token
        if not token:
            return True
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = ""
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True
        return self.session_of(scope) is not None


def with_headers(send: Send) -> Send:
    """``send`` that adds :data:`DEFAULT_HEADERS` a response lacks."""
    async def wrapped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k.lower().encode(), v.encode()) for k, v in DEFAULT_HEADERS.items()
                     if k.lower().encode() not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)
    return wrapped


def client_address(scope: Scope) -> str:
    return str((scope.get("client") or ("?", 0))[0])


class Guard:
    """ASGI middleware: the :class:`Access` rules before any route runs, for HTTP and websockets.

    ``/health`` is open (Docker's health check); the dashboard's files and the API's description
    need no token (they hold no data) but follow the Host and Origin rules; everything else needs the token.
    A refused websocket gets a plain HTTP answer (401/403) instead of the upgrade.
    """

    def __init__(self, app: ASGIApp, access: Access, protected: Callable[[str], bool]):
        self.app = app
        self.access = access
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        refused = self.access.refusal(scope.get("headers", []))
        needs_token = scope["type"] == "websocket" or self.protected(scope["path"]) or scope["path"] == "/login"
        extra: dict[str, str] = {}
        if refused is None and needs_token and self.access.config.token:
            wait = self.access.retry_after(scope)
            if wait:
                refused, extra = (429, {"error": "too many wrong tokens from this address",
                                        "fix": f"wait {wait} s, then send the right token"}), {"Retry-After": str(wait)}
            elif not self.access.authorized(scope):
                self.access.failed(scope)
                in_url = self.access.token_in_url(scope)
                refused = 401, {"error": "a token in the address is not accepted (addresses are logged)" if in_url
                                else "missing or wrong token",
                                "fix": "send Authorization: Bearer TOKEN, or open the dashboard as /#token=TOKEN"}
        if refused is None and scope["type"] == "http" and scope.get("method") == "POST" \
                and scope["path"] in MODEL_ROUTES:
            wait = self.access.api_wait(scope)
            if wait:
                refused, extra = (429, {"error": "too many recognition requests from this address",
                                        "fix": f"wait {wait} s (server.api_requests_per_minute)"}), \
                    {"Retry-After": str(wait)}
        if refused is None:
            await self.app(scope, receive, with_headers(send) if scope["type"] == "http" else send)
            return
        self.access.rejected += 1
        response = json_response(*refused, headers=extra)
        if scope["type"] == "http":
            await response(scope, receive, send)
            return
        await send({"type": "websocket.http.response.start", "status": response.status_code,
                    "headers": response.raw_headers})
        await send({"type": "websocket.http.response.body", "body": response.body})


