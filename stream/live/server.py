"""The websocket + HTTP server: live results out to dashboards, on one port.

Every processed frame and every track event is one JSON text message (see
README "Live stream messages"). The pipeline's threads call
:meth:`StreamServer.publish`; the message is encoded once and fanned out on the
server's own event loop into one bounded queue per client. A slow or stuck
client only loses its OLD messages (the queue drops its oldest entry and counts
it); it never slows the pipeline or the other clients.

The same port answers plain HTTP GETs (``process_request``): ``/health``,
``/stats`` (JSON) and the dashboard's static files from ``stream/dashboard/``.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import functools
import hashlib
import hmac
import http
import importlib.resources
import ipaddress
import logging
import mimetypes
import threading
import time
from collections import deque
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from facestream import wire
from facestream.errors import FacestreamError
from facestream.stream.config import ServerConfig
from facestream.stream.engine.draw import pixelate
from facestream.stream.engine.faces import UNKNOWN
from facestream.stream.live.commands import Command, CommandError, FeedbackUndo, Subscribe, parse_command
from facestream.stream.live.commands import Feedback as FeedbackCommand
from facestream.stream.live.pipeline import LiveResult, Pipeline, TrackEvent, percentile

log = logging.getLogger(__name__)

# The dashboard ships as package data; an installed package is a folder on disk, so files() is a Path.
DASHBOARD_DIR = Path(str(importlib.resources.files("facestream.stream.dashboard")))
PROTOCOL_VERSION = 1


class Client:
    """One connected websocket client: what it wants and what waits for it."""

    def __init__(self, ws: ServerConnection, maxlen: int, sources: set[str] | None, jpeg: bool):
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
        addr = self.ws.remote_address
        return {
            "remote": f"{addr[0]}:{addr[1]}" if addr else None, "sources": sorted(self.sources) if self.sources else None,
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


SESSION_COOKIE = "facestream_session"


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


class StreamServer:
    """Websocket broadcaster and HTTP endpoints, running its own event loop in a thread.

    Args:
        config: host, port (0 = any free port), token, per-client queue, JPEG rate.
        stats: returns the pipeline's statistics for ``/stats`` and the hello message.
        static_dir: the dashboard's files (served at ``/``).
    """

    def __init__(self, config: ServerConfig | None = None, stats: Callable[[], dict] | None = None,
                 static_dir: Path | None = DASHBOARD_DIR):
        self.config = config or ServerConfig()
        self._stats = stats or dict
        self.static_dir = static_dir
        self.port = self.config.port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[Client] = set()
        self._snapshot: tuple[Client, ...] = ()  # read by publisher threads without a lock
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._last_jpeg: dict[str, float] = {}
        self.published = 0
        self.publish_latency_ms: deque[float] = deque(maxlen=2000)
        self.send_latency_ms: deque[float] = deque(maxlen=20000)
        self.rejected = 0
        self._pipeline: Pipeline | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> StreamServer:
        """Bind and serve in a background thread; raises a clear error if the port is taken, or if the
        server would listen beyond this machine without a token."""
        if not is_loopback(self.config.host) and not self.config.token:
            raise FacestreamError(
                f"Refusing to listen on {self.config.host} without a token: anyone on the network could watch the "
                "cameras and change attendance.",
                "Set server.token (`facestream token` makes one; --token) or listen on 127.0.0.1.")
        self._thread = threading.Thread(target=self._run, name="stream-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise FacestreamError(
                f"Cannot listen on {self.config.host}:{self.config.port} ({self._error}).",
                "Pick another port with --port, or stop the program that uses it.",
            )
        log.info("websocket + HTTP server on %s", self.url)
        return self

    def stop(self) -> None:
        if self._loop is None or self._server is None:
            return
        self._loop.call_soon_threadsafe(self._server.close)
        if self._thread:
            self._thread.join(timeout=10)

    def __enter__(self) -> StreamServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # bind errors end up here
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        async with serve(self._handler, self.config.host, self.config.port, process_request=self._http,
                         max_size=2**16, ping_interval=20, ping_timeout=20) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await server.wait_closed()

    # -- publishing (any thread) -----------------------------------------------
    @property
    def clients(self) -> int:
        return len(self._snapshot)

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
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        text = wire.dumps(message, separators=(",", ":"))
        jpeg_text = None
        if image is not None and source is not None and self.wants_jpeg(source):
            self._last_jpeg[source] = time.monotonic()
            if self.config.blur_unknown:
                image = _hide_unknown_faces(image, message.get("faces") or [])
            jpeg_text = text[:-1] + ',"jpeg":"' + self._encode_jpeg(image) + '"}'
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

    def _encode_jpeg(self, image: np.ndarray) -> str:
        import cv2

        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        return base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""

    def _fanout(self, text: str, jpeg_text: str | None, source: str | None, t_read: float | None) -> None:
        if t_read is not None:
            self.publish_latency_ms.append((time.perf_counter() - t_read) * 1000)
        for c in self._clients:
            if c.wants(source):
                c.offer(jpeg_text if (jpeg_text is not None and c.jpeg) else text, t_read)

    # -- websocket clients -------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # set by the handshake before the handler runs
        query = parse_qs(urlsplit(ws.request.path).query)
        sources = _parse_sources(query.get("sources", [None])[0])
        jpeg = query.get("frames", [""])[0] == "jpeg"
        client = Client(ws, self.config.client_queue, sources, jpeg)
        self._clients.add(client)
        self._snapshot = tuple(self._clients)
        log.info("client %s connected (%d now)", client.info()["remote"], len(self._clients))
        sender = asyncio.create_task(self._sender(client))
        try:
            await ws.send(wire.dumps(self._hello(client)))
            async for raw in ws:
                await self._command(client, raw)
        except ConnectionClosed:
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
            await client.ws.send(wire.dumps({"type": "error", "error": str(exc)} if reply is None else
                                            {"type": reply, "id": exc.id, "command": exc.type, "ok": False,
                                             "error": str(exc)}))
            return
        await client.ws.send(wire.dumps(await self._act(client, cmd)))

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
            return {**reply, "ok": False, "error": "This server has no live pipeline to correct."}
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
                    await client.ws.send(text)
                    client.sent += 1
                    if t_read is not None:
                        self.send_latency_ms.append((time.perf_counter() - t_read) * 1000)
        except ConnectionClosed:
            pass

    # -- HTTP --------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        """The token, from ``Authorization: Bearer``, ``?token=`` (scripts) or the dashboard's session cookie."""
        token = self.config.token
        if not token:
            return True
        given = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            given = given or auth[7:].strip()
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(request.headers.get("Cookie", ""))
        except CookieError:
            return False
        session = cookie.get(SESSION_COOKIE)
        return session is not None and hmac.compare_digest(session.value.encode(), self._session_value().encode())

    def _session_value(self) -> str:
        """The dashboard's cookie: derived from the token, so the token itself never sits in the browser."""
        return hmac.new((self.config.token or "").encode(), b"facestream dashboard session", hashlib.sha256).hexdigest()

    def _refusal(self, request: Request) -> Response | None:
        """403 for a request from another web page (``Origin``) or for another host name (DNS rebinding).

        Browsers send ``Origin`` with every websocket handshake and cross-site request; a page
        the operator opens elsewhere must not watch the cameras. Scripts send none and need the
        token when one is set.
        """
        host_header = request.headers.get("Host", "")
        hostname = (urlsplit("//" + host_header).hostname or "").lower()
        allowed = {h.lower() for h in self.config.allowed_hosts}
        if (is_loopback(self.config.host) or allowed) and hostname not in allowed and not is_loopback(hostname):
            self.rejected += 1
            return self._json(403, {"error": f"host {hostname or '(none)'!r} not allowed",
                                    "fix": "open it as http://127.0.0.1:PORT/, or list the name in server.allowed_hosts"})
        origin = request.headers.get("Origin")
        if origin is not None:
            same = urlsplit(origin).netloc.lower() == host_header.lower() and origin != "null"
            if not same and origin.rstrip("/") not in {o.rstrip("/") for o in self.config.allowed_origins}:
                self.rejected += 1
                return self._json(403, {"error": f"requests from the page {origin!r} are not allowed",
                                        "fix": "list it in server.allowed_origins if it should be"})
        return None

    @staticmethod
    def _response(status: int, body: bytes, content_type: str) -> Response:
        st = http.HTTPStatus(status)
        headers = Headers([
            ("Date", email.utils.formatdate(usegmt=True)), ("Content-Length", str(len(body))),
            ("Content-Type", content_type), ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
        ])
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="facestream"'
        return Response(st.value, st.phrase, headers, body)

    def _json(self, status: int, obj: Any) -> Response:
        return self._response(status, wire.dumps(obj, default=str).encode(), "application/json")

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        is_ws = "websocket" in request.headers.get("Upgrade", "").lower()
        if path == "/health":
            return self._json(200, {"status": "ok", "clients": self.clients})
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if is_ws:
            if not self._authorized(request):
                self.rejected += 1
                return self._json(401, {"error": "missing or wrong token"})
            return None  # go on with the websocket handshake
        if path == "/login":
            return self._login(request)
        if path == "/stats":
            if not self._authorized(request):
                return self._json(401, {"error": "missing or wrong token"})
            return self._json(200, self.stats())
        return self._static(path)

    def _login(self, request: Request) -> Response:
        """The dashboard trades the token (``Authorization: Bearer``) for an HttpOnly, SameSite=Strict session
        cookie, so the token leaves the address bar, the history and every later URL."""
        if not self.config.token:
            return self._response(204, b"", "text/plain")
        if not self._authorized(request):
            self.rejected += 1
            return self._json(401, {"error": "missing or wrong token"})
        resp = self._response(204, b"", "text/plain")
        secure = "; Secure" if request.headers.get("X-Forwarded-Proto", "").lower() == "https" else ""
        resp.headers["Set-Cookie"] = f"{SESSION_COOKIE}={self._session_value()}; HttpOnly; SameSite=Strict; Path=/{secure}"
        return resp

    def _static(self, path: str) -> Response:
        if self.static_dir is None or not self.static_dir.is_dir():
            return self._json(404, {"error": "no dashboard installed", "endpoints": ["/health", "/stats", "ws://"]})
        rel = path.lstrip("/") or "index.html"
        root = self.static_dir.resolve()
        target = (root / rel).resolve()
        if target.is_dir():
            target = target / "index.html"
        if root not in target.parents or not target.is_file():
            return self._json(404, {"error": f"not found: {path}"})
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        return self._response(200, target.read_bytes(), ctype)

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
