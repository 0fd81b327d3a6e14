"""Websocket fan-out: one bounded queue per client, and messages encoded once for all of them.

A slow or stuck client only loses its OLD messages (its queue drops the oldest entry and counts
it); it never slows the producer or the other clients. A frame's picture is encoded once, as a
second text of the same message, for the clients that asked for pictures.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import deque

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from facestream import wire
from facestream.stream.config import ServerConfig
from facestream.stream.engine.draw import pixelate
from facestream.stream.engine.faces import UNKNOWN


class Client:
    """One connected websocket client: what it wants and what waits for it."""

    def __init__(self, ws: WebSocket, maxlen: int, sources: set[str] | None, jpeg: bool):
        self.ws = ws
        self.sources = sources  # None = every source
        self.jpeg = jpeg
        self.jpeg_sources: set[str] | None = None  # pictures of these only (the tiles it shows); None = all
        self.queue: deque[tuple[str, float | None]] = deque(maxlen=maxlen)
        self.wake = asyncio.Event()
        self.sent = 0
        self.dropped = 0
        self.max_queued = 0
        self.connected_at = time.time()

    def wants(self, source: str | None) -> bool:
        return source is None or self.sources is None or source in self.sources

    def wants_picture(self, source: str | None) -> bool:
        """Whether this client wants the JPEG of ``source``'s frames."""
        return (self.jpeg and source is not None and self.wants(source)
                and (self.jpeg_sources is None or source in self.jpeg_sources))

    def pictures(self) -> set[str] | None:
        """The sources this client wants pictures of (None: every source)."""
        if not self.jpeg:
            return set()
        if self.jpeg_sources is None:
            return None if self.sources is None else set(self.sources)
        return set(self.jpeg_sources) if self.sources is None else self.jpeg_sources & self.sources

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
            "jpeg": self.jpeg, "jpeg_sources": sorted(self.jpeg_sources) if self.jpeg_sources is not None else None,
            "queued": len(self.queue), "max_queued": self.max_queued, "sent": self.sent, "dropped": self.dropped,
        }


def hide_unknown_faces(image: np.ndarray, faces: list[dict]) -> np.ndarray:
    """A copy of ``image`` with the boxes of the message's unknown faces pixelated (known ones untouched)."""

    boxes = [f["box"] for f in faces if f.get("name", UNKNOWN) == UNKNOWN and "box" in f]
    if not boxes:
        return image
    out = image.copy()
    pixelate(out, boxes)
    return out


def jpeg_base64(image: np.ndarray, quality: int) -> str:
    """A BGR frame as base64 JPEG text (what ``"jpeg"`` in a frame message holds)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""


def with_jpeg(text: str, jpeg: str) -> str:
    """The encoded message ``text`` with a ``"jpeg"`` field appended (no second JSON encoding)."""
    return text[:-1] + ',"jpeg":"' + jpeg + '"}'


def parse_picture_sources(value: str | list[str] | None) -> set[str] | None:
    """``jpeg_sources`` of a subscribe: None for every source (``"*"``, ``"all"``), else the set, which may be
    empty (no tile on screen: no pictures)."""
    if value is None or value in ("*", "all"):
        return None
    items = value.split(",") if isinstance(value, str) else value
    return {s.strip() for s in items if s.strip()}


def parse_sources(value: str | list[str] | None) -> set[str] | None:
    if value is None or value in ("", "*", "all"):
        return None
    items = value.split(",") if isinstance(value, str) else value
    return {s.strip() for s in items if s.strip()} or None


class Fanout:
    """The connected clients and what waits for each: messages are published from any thread (never
    blocking) and delivered on the server's event loop (:attr:`loop`, set when the server runs)."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[Client] = set()
        self._snapshot: tuple[Client, ...] = ()  # read by publisher threads without a lock
        self._last_jpeg: dict[str, float] = {}
        self.published = 0
        self.publish_latency_ms: deque[float] = deque(maxlen=2000)
        self.send_latency_ms: deque[float] = deque(maxlen=20000)

    # -- clients (on the loop) ---------------------------------------------------------------------------
    def add(self, client: Client) -> None:
        self._clients.add(client)
        self.changed()

    def remove(self, client: Client) -> None:
        self._clients.discard(client)
        self.changed()

    def changed(self) -> None:
        """A client came, went or changed what it wants: publishers see it from the next message."""
        self._snapshot = tuple(self._clients)

    @property
    def clients(self) -> tuple[Client, ...]:
        return self._snapshot

    # -- what is wanted (any thread) -----------------------------------------------------------------
    def watched(self) -> set[str] | None:
        """The sources some client wants messages of; None means every source (a client wants all)."""
        out: set[str] = set()
        for c in self._snapshot:
            if c.sources is None:
                return None
            out |= c.sources
        return out

    def jpeg_watched(self) -> set[str] | None:
        """The sources some client wants JPEG frames of (the tiles on screen); None means every source."""
        out: set[str] = set()
        for c in self._snapshot:
            pictures = c.pictures()
            if pictures is None:
                return None
            out |= pictures
        return out

    def wants_jpeg(self, source: str) -> bool:
        """True when some client asked for frames of this source and one is due (rate cap)."""
        if self.config.jpeg_fps <= 0 or not any(c.wants_picture(source) for c in self._snapshot):
            return False
        return time.monotonic() - self._last_jpeg.get(source, 0.0) >= 1.0 / self.config.jpeg_fps

    # -- publishing (any thread) -----------------------------------------------------------------------
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
                image = hide_unknown_faces(image, message.get("faces") or [])
            jpeg_text = with_jpeg(text, jpeg_base64(image, self.config.jpeg_quality))
        self.publish_encoded(text, jpeg_text, source, t_read)

    def publish_encoded(self, text: str, jpeg_text: str | None, source: str | None,
                        t_read: float | None = None) -> None:
        """Queue an already encoded message (and its variant with a JPEG, for viewers); never blocks."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        self.published += 1
        try:
            loop.call_soon_threadsafe(self._deliver, text, jpeg_text, source, t_read)
        except RuntimeError:  # loop closed while stopping
            pass

    def _deliver(self, text: str, jpeg_text: str | None, source: str | None, t_read: float | None) -> None:
        if t_read is not None:
            self.publish_latency_ms.append((time.perf_counter() - t_read) * 1000)
        for c in self._clients:
            if c.wants(source):
                c.offer(jpeg_text if (jpeg_text is not None and c.wants_picture(source)) else text, t_read)

    async def send(self, client: Client) -> None:
        """Send what waits for ``client`` as it comes (one task per client), until it goes away."""
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
