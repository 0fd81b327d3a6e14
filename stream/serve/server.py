"""The websocket + HTTP server: live results out to dashboards, the HTTP API, on one port.

A Starlette application served by uvicorn in its own thread and event loop.
Every processed frame and every track event is one JSON text message (see the
README's "Messages"). Producers (the pipeline's threads, or a gateway's reader of
the workers' Redis stream) call :meth:`StreamServer.publish`; the message is
encoded once and fanned out on the server's loop into one bounded queue per
client (:mod:`.fanout`). Products add routes, commands and hello fields through
:class:`.extensions.ServerExtension`, never by subclassing.

Routes: ``ws://HOST:PORT/`` (live results), ``/health``, ``/stats``, ``/login``,
the dashboard's static files, and whatever ASGI app is mounted at ``/api`` (the
HTTP API with its OpenAPI description). :class:`.access.Guard` checks every request first:
the ``Host`` (DNS rebinding), the ``Origin`` (other web pages) and the token.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
import logging
import mimetypes
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket, WebSocketDisconnect

from facestream import wire
from facestream.errors import FacestreamError
from facestream.stream.config import ServerConfig
from facestream.stream.live.pipeline import LiveResult, Pipeline, TrackEvent, percentile
from facestream.stream.serve.access import (  # noqa: F401 - SESSION_COOKIE: the cookie's name, for clients
    OPEN_PATHS,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    SESSION_TTL,
    Access,
    Guard,
    is_loopback,
    json_response,
)
from facestream.stream.serve.commands import (
    Command,
    CommandError,
    EnrolTrackCommand,
    FeedbackCommand,
    FeedbackUndoCommand,
    Subscribe,
    parse_command,
)
from facestream.stream.serve.extensions import ServerExtension
from facestream.stream.serve.fanout import Client, Fanout, parse_picture_sources, parse_sources
from facestream.stream.serve.http_api import new_api
from facestream.stream.serve.metrics import CONTENT_TYPE_LATEST, metrics_text, registry_for

log = logging.getLogger(__name__)

# The dashboard ships as package data; an installed package is a folder on disk, so files() is a Path.
DASHBOARD_DIR = Path(str(importlib.resources.files("facestream.stream.serve.dashboard")))
PROTOCOL_VERSION = 1


class StreamServer:
    """Websocket broadcaster and HTTP endpoints, running its own event loop in a thread.

    Args:
        config: host, port (0 = any free port), token, per-client queue, JPEG rate.
        stats: returns the pipeline's statistics for ``/stats`` and the hello message.
        static_dir: the dashboard's files (served at ``/``).
        api: an ASGI app (the HTTP API) mounted at ``/api``; None: no API beyond ``/stats`` (unless an
            extension brings routes).
        extensions: products' routes, websocket commands and hello fields (:class:`ServerExtension`).
    """

    # the commands every server takes; extensions add theirs
    COMMANDS: dict[str, type[Command]] = {"subscribe": Subscribe, "feedback": FeedbackCommand,
                                          "feedback_undo": FeedbackUndoCommand, "enrol_track": EnrolTrackCommand}
    REPLIES: dict[str, str] = {"feedback": "feedback_reply", "feedback_undo": "feedback_reply",
                               "enrol_track": "enrol_reply"}

    def __init__(self, config: ServerConfig | None = None, stats: Callable[[], dict] | None = None,
                 static_dir: Path | None = DASHBOARD_DIR, api: ASGIApp | None = None,
                 extensions: Sequence[ServerExtension] = ()):
        self.config = config or ServerConfig()
        self._stats = stats or dict
        self.static_dir = static_dir
        self.extensions = list(extensions)
        self.commands = dict(self.COMMANDS)
        self.replies = dict(self.REPLIES)
        self._command_owner: dict[str, ServerExtension] = {}
        for ext in self.extensions:
            if ext.router is not None:
                if api is None:
                    api = new_api()
                if not isinstance(api, FastAPI):
                    raise TypeError("extensions with routes need a FastAPI app as `api`")
                api.include_router(ext.router)
            if ext.commands and type(ext).act is ServerExtension.act:
                raise TypeError(f"{type(ext).__name__} declares websocket commands but does not answer them (act)")
            for kind in ext.commands:
                if kind in self.commands:
                    raise ValueError(f"two handlers for the websocket command {kind!r}")
                self._command_owner[kind] = ext
            self.commands.update(ext.commands)
            self.replies.update(ext.replies)
        self.api = api
        self.port = self.config.port
        self.access = Access(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.fanout = Fanout(self.config)
        self._pipeline: Pipeline | None = None
        self._health_checks: list[Callable[[], str | None]] = []
        self._metrics: CollectorRegistry | None = None
        for ext in self.extensions:
            ext.bind(self.publish)

    def add_health_check(self, check: Callable[[], str | None]) -> None:
        """``check()`` returns what is wrong (``/health`` answers 503 with it) or None; it must not block."""
        self._health_checks.append(check)

    @property
    def rejected(self) -> int:
        return self.access.rejected

    # -- the application -------------------------------------------------------------------------------------
    def routes(self) -> list:
        """The server's routes; subclasses add theirs in front."""
        routes: list = [WebSocketRoute("/", self._websocket), Route("/health", self._health),
                        Route("/stats", self._stats_route), Route("/metrics", self._metrics_route),
                        Route("/login", self._login, methods=["GET", "POST"]),
                        Route("/logout", self._logout, methods=["POST"])]
        if self.api is not None:
            routes.append(Mount("/api", self.api))
        routes.append(Route("/{path:path}", self._static))
        return routes

    def protected(self, path: str) -> bool:
        """Whether an HTTP path needs the token (websockets always do)."""
        if path in OPEN_PATHS or path.startswith("/api/docs/static/"):  # the docs page's own files
            return False
        return path in ("/stats", "/metrics") or path == "/api" or path.startswith("/api/")

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
        self.fanout.loop = loop
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
            for c in self.fanout.clients:  # open websockets would hold a graceful shutdown
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

    # -- publishing (any thread): the fan-out's ------------------------------------------------
    @property
    def clients(self) -> int:
        return len(self.fanout.clients)

    @property
    def published(self) -> int:
        return self.fanout.published

    def watched(self) -> set[str] | None:
        return self.fanout.watched()

    def jpeg_watched(self) -> set[str] | None:
        return self.fanout.jpeg_watched()

    def wants_jpeg(self, source: str) -> bool:
        return self.fanout.wants_jpeg(source)

    def publish(self, message: dict, source: str | None = None, t_read: float | None = None,
                image: np.ndarray | None = None) -> None:
        """Queue one message for every interested client; never blocks (:meth:`Fanout.publish`)."""
        self.fanout.publish(message, source, t_read, image)

    def publish_encoded(self, text: str, jpeg_text: str | None, source: str | None,
                        t_read: float | None = None) -> None:
        self.fanout.publish_encoded(text, jpeg_text, source, t_read)

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

    # -- websocket clients -------------------------------------------------------
    async def _websocket(self, ws: WebSocket) -> None:
        query = ws.query_params
        client = Client(ws, self.config.client_queue, parse_sources(query.get("sources")),
                        query.get("frames", "") == "jpeg")
        await ws.accept()
        self.fanout.add(client)
        log.info("client %s connected (%d now)", client.info()["remote"], self.clients)
        sender: asyncio.Task | None = None
        try:
            # built off the event loop: a hello may read Redis (attendance), which must never stall other clients;
            # messages published meanwhile wait in the client's queue and follow the hello
            hello = await asyncio.get_running_loop().run_in_executor(None, self._hello, client)
            await ws.send_text(wire.dumps(hello))
            sender = asyncio.create_task(self.fanout.send(client))
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
            if sender is not None:
                sender.cancel()
            self.fanout.remove(client)
            log.info("client %s left (sent %d, dropped %d)", client.info()["remote"], client.sent, client.dropped)

    def _hello(self, client: Client) -> dict:
        try:
            sources = sorted(self._stats().get("sources", {}))
        except Exception:  # stats must never break a connection
            sources = []
        hello = {"type": "hello", "version": PROTOCOL_VERSION, "sources": sources,
                 "subscribed": sorted(client.sources) if client.sources else None,
                 "frames": "jpeg" if client.jpeg else "none"}
        for ext in self.extensions:
            hello.update(ext.hello())
        return hello

    async def _command(self, client: Client, raw: str | bytes) -> None:
        """One client request, validated (:mod:`facestream.stream.serve.commands`): ``subscribe`` (sources,
        frames); corrections ``feedback`` (source, track_id, verdict "not" | "is", person) and ``feedback_undo``
        (feedback id), answered with ``{"type": "feedback_reply", "id": ..., "ok": ..., "feedback" | "error"}``.
        A malformed command gets ``{"type": "error", "error": ...}`` and the connection stays open."""
        try:
            cmd = parse_command(raw, self.commands)
        except CommandError as exc:
            reply = self.replies.get(exc.type or "")
            await client.ws.send_text(wire.dumps({"type": "error", "error": str(exc)} if reply is None else
                                                 {"type": reply, "id": exc.id, "command": exc.type, "ok": False,
                                                  "error": str(exc)}))
            return
        await client.ws.send_text(wire.dumps(await self._act(client, cmd)))

    async def _act(self, client: Client, cmd: Command) -> dict:
        """Act on a valid command; the reply to send back."""
        owner = self._command_owner.get(cmd.type)
        if owner is not None:
            return await owner.act(cmd)
        if isinstance(cmd, FeedbackCommand | FeedbackUndoCommand):
            return await self._feedback(cmd)
        if isinstance(cmd, EnrolTrackCommand):
            return await self._enrol_track(cmd)
        assert isinstance(cmd, Subscribe)
        if "sources" in cmd.model_fields_set:
            client.sources = parse_sources(cmd.sources)
        if cmd.frames is not None:
            client.jpeg = cmd.frames == "jpeg"
        if "jpeg_sources" in cmd.model_fields_set:
            client.jpeg_sources = parse_picture_sources(cmd.jpeg_sources)
        self.fanout.changed()
        reply = {"type": "subscribed", "sources": sorted(client.sources) if client.sources else None,
                 "frames": "jpeg" if client.jpeg else "none"}
        if client.jpeg_sources is not None:  # absent: pictures of every source it receives
            reply["jpeg_sources"] = sorted(client.jpeg_sources)
        return reply

    async def _enrol_track(self, cmd: EnrolTrackCommand) -> dict:
        """Enrol a stranger's track off the event loop (it embeds and writes the gallery)."""
        reply: dict[str, Any] = {"type": "enrol_reply", "id": cmd.id, "command": cmd.type}
        pipeline = self._pipeline
        if pipeline is None:
            return {**reply, "ok": False, "error": "This server has no live pipeline; enrol with `facestream enroll` "
                                                   "and a photo or a clip of the person."}
        call = functools.partial(pipeline.enrol_track, cmd.source, cmd.track_id, cmd.name.strip())
        try:
            report = await asyncio.get_running_loop().run_in_executor(None, call)
        except FacestreamError as exc:
            return {**reply, "ok": False, "error": str(exc)}
        return {**reply, "ok": True, "name": cmd.name.strip(), **report.to_json()}

    async def _feedback(self, cmd: FeedbackCommand | FeedbackUndoCommand) -> dict:
        """Run a correction off the event loop (it writes to the gallery, maybe embeds); the reply says how it went."""
        reply: dict[str, Any] = {"type": "feedback_reply", "id": cmd.id, "command": cmd.type}
        pipeline = self._pipeline
        if pipeline is None:
            return {**reply, "ok": False, "error": "This server has no live pipeline to correct; use "
                                                   "`facestream feedback` with a photo of the face."}
        if isinstance(cmd, FeedbackUndoCommand):
            call = functools.partial(pipeline.undo_feedback, cmd.feedback)
        else:
            call = functools.partial(pipeline.feedback, cmd.source, cmd.track_id, cmd.verdict,
                                     (cmd.person or "").strip() or None)
        try:
            done = await asyncio.get_running_loop().run_in_executor(None, call)
        except FacestreamError as exc:
            return {**reply, "ok": False, "error": str(exc)}
        return {**reply, "ok": True, "feedback": done.to_json()}

    # -- HTTP --------------------------------------------------------------------
    async def _health(self, request: Request) -> Response:
        problems = [p for p in (check() for check in self._health_checks) if p]
        if problems:
            return json_response(503, {"status": "failing", "problems": problems, "clients": self.clients})
        return json_response(200, {"status": "ok", "clients": self.clients})

    async def _stats_route(self, request: Request) -> Response:
        stats = await asyncio.get_running_loop().run_in_executor(None, self.stats)  # may read Redis
        return json_response(200, stats)

    async def _metrics_route(self, request: Request) -> Response:
        """Prometheus exposition of the same statistics (a scraper sends the token as a bearer token)."""
        if self._metrics is None:
            self._metrics = registry_for(self.stats)
        body = await asyncio.get_running_loop().run_in_executor(None, metrics_text, self._metrics)  # may read Redis
        return Response(body, 200, media_type=CONTENT_TYPE_LATEST)

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
        return [c.info() for c in self.fanout.clients]

    def server_stats(self) -> dict:
        sent = list(self.fanout.send_latency_ms)
        pub = list(self.fanout.publish_latency_ms)
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
