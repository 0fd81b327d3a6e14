"""The websocket + HTTP server: live results out to dashboards, the HTTP API, on one port.

A Starlette application served by uvicorn in its own thread and event loop.
Every processed frame and every track event is one JSON text message (see the
README's "Messages"). Producers (the pipeline's threads, or a gateway's reader of
the workers' Redis stream) call :meth:`StreamServer.publish`; the message is
encoded once and fanned out on the server's loop into one bounded queue per
client. A slow or stuck client only loses its OLD messages (the queue drops its
oldest entry and counts it); it never slows the pipeline or the other clients.

Routes: ``ws://HOST:PORT/`` (live results), ``/health``, ``/stats``, ``/login``,
the dashboard's static files, and whatever ASGI app is mounted at ``/api`` (the
HTTP API with its OpenAPI description). :class:`Guard` checks every request first:
the ``Host`` (DNS rebinding), the ``Origin`` (other web pages) and the token.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import importlib.resources
import ipaddress
import logging
import mimetypes
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request, cookie_parser
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from facestream import wire
from facestream.errors import FacestreamError
from facestream.stream.config import ServerConfig
from facestream.stream.engine.draw import pixelate
from facestream.stream.engine.faces import UNKNOWN
from facestream.stream.live.commands import Command, CommandError, FeedbackUndo, Subscribe, parse_command
from facestream.stream.live.commands import Feedback as FeedbackCommand
from facestream.stream.live.pipeline import LiveResult, Pipeline, TrackEvent, percentile
from facestream.stream.live.rate_limit import WindowLimit

log = logging.getLogger(__name__)

# The dashboard ships as package data; an installed package is a folder on disk, so files() is a Path.
DASHBOARD_DIR = Path(str(importlib.resources.files("facestream.stream.dashboard")))
PROTOCOL_VERSION = 1
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


class Client:
    """One connected websocket client: what it wants and what waits for it."""

    def __init__(self, ws: WebSocket, maxlen: int, sources: set[str] | None, jpeg: bool):
        self.ws = ws
        self.sources = sources  # None = every source
        self.jpeg = jpeg
        self.queue: deque[tuple[str, float | None]] = deque(maxlen=maxlen)
        self.wake = asyncio.Event()
        self.sent = 0
        self.dropped = 0
        self.max_queued = 0
        self.connected_at = time.time()

    def wants(self, source: str | None) -> bool:
        return source is None or self.sources is None or source in self.sources

    def offer(self, text: str, t_read: float | None) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest on append
        self.queue.append((text, t_read))
        self.max_queued = max(self.max_queued, len(self.queue))
        self.wake.set()

    def info(self) -> dict:
        addr = self.ws.client
        return {
            "remote": f"{addr.host}:{addr.port}" if addr else None,
            "sources": sorted(self.sources) if self.sources else None,
            "jpeg": self.jpeg, "queued": len(self.queue), "max_queued": self.max_queued, "sent": self.sent,
            "dropped": self.dropped,
        }


def _hide_unknown_faces(image: np.ndarray, faces: list[dict]) -> np.ndarray:
    """A copy of ``image`` with the boxes of the message's unknown faces pixelated (known ones untouched)."""

    boxes = [f["box"] for f in faces if f.get("name", UNKNOWN) == UNKNOWN and "box" in f]
    if not boxes:
        return image
    out = image.copy()
    pixelate(out, boxes)
    return out


def encode_jpeg(image: np.ndarray, quality: int) -> str:
    """A BGR frame as base64 JPEG text (what ``"jpeg"`` in a frame message holds)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""


def with_jpeg(text: str, jpeg: str) -> str:
    """The encoded message ``text`` with a ``"jpeg"`` field appended (no second JSON encoding)."""
    return text[:-1] + ',"jpeg":"' + jpeg + '"}'


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine only (127.0.0.0/8, ::1, localhost)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_sources(value: str | list[str] | None) -> set[str] | None:
    if value is None or value in ("", "*", "all"):
        return None
    items = value.split(",") if isinstance(value, str) else value
    return {s.strip() for s in items if s.strip()} or None


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

    def authorized(self, scope: Scope) -> bool:
        """The token, from ``Authorization: Bearer``, ``?token=`` (scripts) or the dashboard's session cookie."""
        token = self.config.token
        if not token:
            return True
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = given or auth[7:].strip()
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True
        return self.session_of(scope) is not None


def with_headers(send: Send) -> Send:
    """``send`` that adds :data:`DEFAULT_HEADERS` a response lacks."""
    async def wrapped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k.lower().encode(), v.encode()) for k, v in DEFAULT_HEADERS.items() if k.lower().encode() not in present]
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
                refused = 401, {"error": "missing or wrong token",
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


class StreamServer:
    """Websocket broadcaster and HTTP endpoints, running its own event loop in a thread.

    Args:
        config: host, port (0 = any free port), token, per-client queue, JPEG rate.
        stats: returns the pipeline's statistics for ``/stats`` and the hello message.
        static_dir: the dashboard's files (served at ``/``).
        api: an ASGI app (the HTTP API) mounted at ``/api``; None: no API beyond ``/stats``.
    """

    def __init__(self, config: ServerConfig | None = None, stats: Callable[[], dict] | None = None,
                 static_dir: Path | None = DASHBOARD_DIR, api: ASGIApp | None = None):
        self.config = config or ServerConfig()
        self._stats = stats or dict
        self.static_dir = static_dir
        self.api = api
        self.port = self.config.port
        self.access = Access(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[Client] = set()
        self._snapshot: tuple[Client, ...] = ()  # read by publisher threads without a lock
        self._last_jpeg: dict[str, float] = {}
        self.published = 0
        self.publish_latency_ms: deque[float] = deque(maxlen=2000)
        self.send_latency_ms: deque[float] = deque(maxlen=20000)
        self._pipeline: Pipeline | None = None

    @property
    def rejected(self) -> int:
        return self.access.rejected

    # -- the application -------------------------------------------------------------------------------------
    def routes(self) -> list:
        """The server's routes; subclasses add theirs in front."""
        routes: list = [WebSocketRoute("/", self._websocket), Route("/health", self._health),
                        Route("/stats", self._stats_route), Route("/login", self._login, methods=["GET", "POST"]),
                        Route("/logout", self._logout, methods=["POST"])]
        if self.api is not None:
            routes.append(Mount("/api", self.api))
        routes.append(Route("/{path:path}", self._static))
        return routes

    def protected(self, path: str) -> bool:
        """Whether an HTTP path needs the token (websockets always do)."""
        if path in OPEN_PATHS or path.startswith("/api/docs/static/"):  # the docs page's own files
            return False
        return path == "/stats" or path == "/api" or path.startswith("/api/")

    def app(self) -> ASGIApp:
        return Guard(Starlette(routes=self.routes()), self.access, self.protected)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> StreamServer:
        """Bind and serve in a background thread; raises a clear error if the port is taken, or if the
        server would listen beyond this machine without a token."""
        if not is_loopback(self.config.host) and not self.config.token:
            raise FacestreamError(
                f"Refusing to listen on {self.config.host} without a token: anyone on the network could watch the "
                "cameras and change attendance.",
                "Set server.token (`facestream token` makes one; --token) or listen on 127.0.0.1.")
        try:
            family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.config.host, self.config.port))
            sock.listen(256)
        except OSError as exc:
            raise FacestreamError(
                f"Cannot listen on {self.config.host}:{self.config.port} ({exc}).",
                "Pick another port with --port, or stop the program that uses it.",
            ) from None
        self.port = sock.getsockname()[1]
        self.access.cookie_name = f"{SESSION_COOKIE}_{self.port}"
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off", ws="websockets-sansio",
                                ws_max_size=2**16, ws_ping_interval=20, ws_ping_timeout=20,
                                proxy_headers=False, server_header=False, date_header=True,
                                timeout_graceful_shutdown=2)
        self._uvicorn = uvicorn.Server(config)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sock, ready), name="stream-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        deadline = time.monotonic() + 10
        while not self._uvicorn.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._uvicorn.started:
            raise FacestreamError(f"The server on {self.config.host}:{self.port} did not start.",
                                  "See the log above; try another --port.")
        log.info("websocket + HTTP server on %s", self.url)
        return self

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        ready.set()
        try:
            assert self._uvicorn is not None
            loop.run_until_complete(self._uvicorn.serve(sockets=[sock]))
        except BaseException:  # noqa: BLE001 - a server that dies says so in the log
            log.exception("the server stopped")
        finally:
            sock.close()
            loop.close()

    def stop(self) -> None:
        if self._uvicorn is None:
            return
        self._uvicorn.should_exit = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            for c in list(self._clients):  # open websockets would hold a graceful shutdown
                try:
                    asyncio.run_coroutine_threadsafe(self._close(c), loop)
                except RuntimeError:
                    pass
        if self._thread:
            self._thread.join(timeout=10)

    @staticmethod
    async def _close(client: Client) -> None:
        try:
            await client.ws.close(1001)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def __enter__(self) -> StreamServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/"

    # -- publishing (any thread) -----------------------------------------------
    @property
    def clients(self) -> int:
        return len(self._snapshot)

    def jpeg_watched(self) -> set[str] | None:
        """The sources some client wants JPEG frames of; None means every source (a client wants all)."""
        out: set[str] = set()
        for c in self._snapshot:
            if c.jpeg:
                if c.sources is None:
                    return None
                out |= c.sources
        return out

    def wants_jpeg(self, source: str) -> bool:
        """True when some client asked for frames of this source and one is due (rate cap)."""
        if self.config.jpeg_fps <= 0 or not any(c.jpeg and c.wants(source) for c in self._snapshot):
            return False
        return time.monotonic() - self._last_jpeg.get(source, 0.0) >= 1.0 / self.config.jpeg_fps

    def publish(self, message: dict, source: str | None = None, t_read: float | None = None,
                image: np.ndarray | None = None) -> None:
        """Queue one message for every interested client; never blocks.

        Args:
            message: a JSON-ready dict (``type`` frame/event/...).
            source: the source it belongs to, for subscriptions.
            t_read: ``perf_counter()`` when its frame was read, for latency stats.
            image: the BGR frame; attached as JPEG for viewers that asked, at ``jpeg_fps``.
                With ``blur_unknown`` the message's unknown faces are pixelated
                first, so their pixels never leave the process.
        """
        text = wire.dumps(message, separators=(",", ":"))
        jpeg_text = None
        if image is not None and source is not None and self.wants_jpeg(source):
            self._last_jpeg[source] = time.monotonic()
            if self.config.blur_unknown:
                image = _hide_unknown_faces(image, message.get("faces") or [])
            jpeg_text = with_jpeg(text, encode_jpeg(image, self.config.jpeg_quality))
        self.publish_encoded(text, jpeg_text, source, t_read)

    def publish_encoded(self, text: str, jpeg_text: str | None, source: str | None,
                        t_read: float | None = None) -> None:
        """Queue an already encoded message (and its variant with a JPEG, for viewers); never blocks."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self.published += 1
        try:
            loop.call_soon_threadsafe(self._fanout, text, jpeg_text, source, t_read)
        except RuntimeError:  # loop closed while stopping
            pass

    def attach(self, pipeline: Pipeline) -> StreamServer:
        """Publish every result (with a JPEG for viewers that asked) and event of a :class:`Pipeline`, and
        take its users' corrections (``feedback`` commands)."""
        pipeline.add_listener(self._on_result, self._on_event)
        self._pipeline = pipeline
        return self

    def _on_result(self, result: LiveResult, rgb: np.ndarray) -> None:
        self.publish(result.to_json(), result.source_id, getattr(result, "t_read", None),
                     image=getattr(result, "image", None))

    def _on_event(self, event: TrackEvent) -> None:
        self.publish(event.to_json(), event.source_id)

    def _fanout(self, text: str, jpeg_text: str | None, source: str | None, t_read: float | None) -> None:
        if t_read is not None:
            self.publish_latency_ms.append((time.perf_counter() - t_read) * 1000)
        for c in self._clients:
            if c.wants(source):
                c.offer(jpeg_text if (jpeg_text is not None and c.jpeg) else text, t_read)

    # -- websocket clients -------------------------------------------------------
    async def _websocket(self, ws: WebSocket) -> None:
        query = ws.query_params
        client = Client(ws, self.config.client_queue, _parse_sources(query.get("sources")),
                        query.get("frames", "") == "jpeg")
        await ws.accept()
        self._clients.add(client)
        self._snapshot = tuple(self._clients)
        log.info("client %s connected (%d now)", client.info()["remote"], len(self._clients))
        sender = asyncio.create_task(self._sender(client))
        try:
            await ws.send_text(wire.dumps(self._hello(client)))
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text") if message.get("text") is not None else message.get("bytes")
                if raw is not None:
                    await self._command(client, raw)
        except (WebSocketDisconnect, OSError, RuntimeError):  # the client went away mid-send
            pass
        finally:
            sender.cancel()
            self._clients.discard(client)
            self._snapshot = tuple(self._clients)
            log.info("client %s left (sent %d, dropped %d)", client.info()["remote"], client.sent, client.dropped)

    def _hello(self, client: Client) -> dict:
        try:
            sources = sorted(self._stats().get("sources", {}))
        except Exception:  # stats must never break a connection
            sources = []
        return {"type": "hello", "version": PROTOCOL_VERSION, "sources": sources,
                "subscribed": sorted(client.sources) if client.sources else None,
                "frames": "jpeg" if client.jpeg else "none"}

    # the commands this server takes; subclasses add theirs (attendance)
    COMMANDS: dict[str, type[Command]] = {"subscribe": Subscribe, "feedback": FeedbackCommand,
                                          "feedback_undo": FeedbackUndo}
    REPLIES: dict[str, str] = {"feedback": "feedback_reply", "feedback_undo": "feedback_reply"}

    async def _command(self, client: Client, raw: str | bytes) -> None:
        """One client request, validated (:mod:`facestream.stream.live.commands`): ``subscribe`` (sources,
        frames); corrections ``feedback`` (source, track_id, verdict "not" | "is", person) and ``feedback_undo``
        (feedback id), answered with ``{"type": "feedback_reply", "id": ..., "ok": ..., "feedback" | "error"}``.
        A malformed command gets ``{"type": "error", "error": ...}`` and the connection stays open."""
        try:
            cmd = parse_command(raw, self.COMMANDS)
        except CommandError as exc:
            reply = self.REPLIES.get(exc.type or "")
            await client.ws.send_text(wire.dumps({"type": "error", "error": str(exc)} if reply is None else
                                                 {"type": reply, "id": exc.id, "command": exc.type, "ok": False,
                                                  "error": str(exc)}))
            return
        await client.ws.send_text(wire.dumps(await self._act(client, cmd)))

    async def _act(self, client: Client, cmd: Command) -> dict:
        """Act on a valid command; the reply to send back."""
        if isinstance(cmd, FeedbackCommand | FeedbackUndo):
            return await self._feedback(cmd)
        assert isinstance(cmd, Subscribe)
        if "sources" in cmd.model_fields_set:
            client.sources = _parse_sources(cmd.sources)
        if cmd.frames is not None:
            client.jpeg = cmd.frames == "jpeg"
        self._snapshot = tuple(self._clients)
        return {"type": "subscribed", "sources": sorted(client.sources) if client.sources else None,
                "frames": "jpeg" if client.jpeg else "none"}

    async def _feedback(self, cmd: FeedbackCommand | FeedbackUndo) -> dict:
        """Run a correction off the event loop (it writes to the gallery, maybe embeds); the reply says how it went."""
        reply: dict[str, Any] = {"type": "feedback_reply", "id": cmd.id, "command": cmd.type}
        pipeline = self._pipeline
        if pipeline is None:
            return {**reply, "ok": False, "error": "This server has no live pipeline to correct; use "
                                                   "`facestream feedback` with a photo of the face."}
        if isinstance(cmd, FeedbackUndo):
            call = functools.partial(pipeline.undo_feedback, cmd.feedback)
        else:
            call = functools.partial(pipeline.feedback, cmd.source, cmd.track_id, cmd.verdict,
                                     (cmd.person or "").strip() or None)
        try:
            done = await asyncio.get_running_loop().run_in_executor(None, call)
        except FacestreamError as exc:
            return {**reply, "ok": False, "error": str(exc)}
        return {**reply, "ok": True, "feedback": done.to_json()}

    async def _sender(self, client: Client) -> None:
        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                while client.queue:
                    text, t_read = client.queue.popleft()
                    await client.ws.send_text(text)
                    client.sent += 1
                    if t_read is not None:
                        self.send_latency_ms.append((time.perf_counter() - t_read) * 1000)
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass

    # -- HTTP --------------------------------------------------------------------
    async def _health(self, request: Request) -> Response:
        return json_response(200, {"status": "ok", "clients": self.clients})

    async def _stats_route(self, request: Request) -> Response:
        stats = await asyncio.get_running_loop().run_in_executor(None, self.stats)  # may read Redis
        return json_response(200, stats)

    async def _login(self, request: Request) -> Response:
        """The dashboard trades the token (``Authorization: Bearer``) for an HttpOnly, SameSite=Strict session
        cookie, so the token leaves the address bar, the history and every later URL."""
        if not self.config.token:
            return Response(b"", 204, SECURITY_HEADERS)
        if not self.access.authorized(request.scope):
            self.access.rejected += 1
            return json_response(401, {"error": "missing or wrong token"})
        resp = Response(b"", 204, SECURITY_HEADERS)
        secure = "; Secure" if request.headers.get("x-forwarded-proto", "").lower() == "https" else ""
        resp.headers["Set-Cookie"] = (f"{self.access.cookie_name}={self.access.new_session()}; HttpOnly; "
                                      f"SameSite=Strict; Path=/; Max-Age={int(SESSION_TTL)}{secure}")
        return resp

    async def _logout(self, request: Request) -> Response:
        """End this browser's session (the cookie is worthless from now on, wherever a copy of it went)."""
        value = self.access.session_of(request.scope)
        if value is not None:
            self.access.end_session(value)
        resp = Response(b"", 204, SECURITY_HEADERS)
        resp.headers["Set-Cookie"] = f"{self.access.cookie_name}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        return resp

    async def _static(self, request: Request) -> Response:
        path = request.url.path
        if self.static_dir is None or not self.static_dir.is_dir():
            return json_response(404, {"error": "no dashboard installed",
                                       "endpoints": ["/health", "/stats", "ws://", "/api/docs"]})
        rel = path.lstrip("/") or "index.html"
        root = self.static_dir.resolve()
        target = (root / rel).resolve()
        if target.is_dir():
            target = target / "index.html"
        if root not in target.parents or not target.is_file():
            return json_response(404, {"error": f"not found: {path}"})
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        return Response(target.read_bytes(), 200, SECURITY_HEADERS, media_type=ctype)

    # -- statistics ----------------------------------------------------------------
    def client_stats(self) -> list[dict]:
        """Per connected client: its subscription, queue length (now and at most), sent and dropped."""
        return [c.info() for c in self._snapshot]

    def server_stats(self) -> dict:
        sent = list(self.send_latency_ms)
        pub = list(self.publish_latency_ms)
        clients = self.client_stats()
        return {
            "url": self.url, "clients": len(clients), "published": self.published, "rejected": self.rejected,
            "dropped": sum(c["dropped"] for c in clients),
            "latency_ms": {"publish_p50": percentile(pub, 50), "publish_p99": percentile(pub, 99),
                           "sent_p50": percentile(sent, 50), "sent_p99": percentile(sent, 99)},
            "client_list": clients,
        }

    def stats(self) -> dict:
        """Pipeline statistics plus the server's own, for ``/stats``."""
        try:
            out = dict(self._stats())
        except Exception as exc:  # never fail the endpoint
            out = {"error": str(exc)}
        out["server"] = self.server_stats()
        return out
