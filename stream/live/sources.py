"""Video sources: webcams, files, RTSP/HTTP streams and image folders, one reader thread each.

Live sources (cameras, network streams, files read at native pace) keep only the
newest frame, because a recognizer that falls behind a camera should skip frames
rather than lag further and further; the frames it skips are counted. Files read
as fast as the consumer can take them deliver every frame, in order.

A live source that stops delivering is reopened by the :class:`Watchdog`, with
exponential backoff, by starting a fresh reader thread: a reader stuck inside
FFmpeg cannot be interrupted safely, so it is abandoned (it exits when its read
returns) and the other sources never notice. Connecting has its own, longer
budget (``open_timeout``): an RTSP handshake plus the probe of the first frames
can take seconds on a busy machine, and a watchdog that judged a connection
attempt by the frame-stall clock would abandon every attempt before it finished.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from facestream.errors import FacestreamError, redact
from facestream.stream.config import SourceConfig
from facestream.stream.engine.imageio import FORMATS, image_files, load_image

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
FILE_QUEUE = 8  # frames a file reader may run ahead of its consumer
CONNECT_GRACE = 2.0  # seconds past open_timeout before the watchdog gives up on a hung connection attempt


@dataclass
class Frame:
    """One decoded frame and where and when it came from.

    Attributes:
        source_id: the source's name in messages (``cam0``...).
        index: frames read by this source since it started (for a file without
            ``loop``: the file's frame index); gaps mean dropped frames.
        timestamp: capture time, seconds since the epoch.
        image: BGR uint8 (OpenCV's order, what encoders and drawing expect).
        t_read: ``time.perf_counter()`` when the frame was read; the origin of latency.
        decode_ms: time spent reading and decoding this frame.
    """

    source_id: str
    index: int
    timestamp: float
    image: np.ndarray
    t_read: float
    decode_ms: float = 0.0


def as_bgr(img: np.ndarray) -> np.ndarray:
    """A frame as 3-channel BGR uint8, whatever a capture delivered: grey, BGRA or 16-bit."""
    import cv2

    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def source_kind(url: str) -> str:
    """``webcam``, ``stream``, ``folder`` or ``file`` for a configured source URL."""
    text = str(url).strip()
    if text.isdigit() or text.startswith("/dev/video"):
        return "webcam"
    if text.lower().startswith(STREAM_SCHEMES):
        return "stream"
    path = Path(text).expanduser()
    return "folder" if path.is_dir() else "file"


class _Capture(Protocol):
    fps: float
    size: tuple[int, int]

    def read(self) -> np.ndarray | None: ...

    def release(self) -> None: ...


class _CvCapture:
    """An OpenCV (FFmpeg backend) capture for webcams, files and network streams."""

    def __init__(self, url: str, kind: str, open_timeout: float, read_timeout: float):
        import cv2

        self._cv2 = cv2
        if kind == "webcam":
            target: str | int = int(url) if url.strip().isdigit() else url
            self.cap = cv2.VideoCapture(target)
        elif kind == "stream":
            # TCP for RTSP: a dead server then fails the read at once instead of
            # waiting out UDP timeouts; set before the capture is created.
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout * 1000)]
            self.cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        else:
            self.cap = cv2.VideoCapture(str(Path(url).expanduser()), cv2.CAP_FFMPEG)
        if not self.cap.isOpened():
            self.cap.release()
            raise OSError("could not be opened")
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0
        self.size = (int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def read(self) -> np.ndarray | None:
        ok, img = self.cap.read()
        return img if ok and img is not None else None

    def release(self) -> None:
        self.cap.release()


class _FolderCapture:
    """The images of a folder in name order, as if they were frames."""

    fps = 1.0
    size = (0, 0)

    def __init__(self, folder: str):
        root = Path(folder).expanduser()
        self.paths = image_files(root)
        if not self.paths:
            raise OSError(f"holds no images ({FORMATS})")
        self.pos = 0

    def read(self) -> np.ndarray | None:
        """The next readable image as BGR (frames are BGR); read like every photo, by :func:`load_image`."""
        import cv2

        while self.pos < len(self.paths):
            path = self.paths[self.pos]
            self.pos += 1
            try:
                return cv2.cvtColor(load_image(path), cv2.COLOR_RGB2BGR)
            except FacestreamError as exc:
                log.warning("skipping %s", exc)
        return None

    def release(self) -> None:
        self.pos = len(self.paths)


class _Mailbox:
    """Frames between a reader and its consumer: newest-only (live) or a bounded FIFO (files)."""

    def __init__(self, latest_only: bool, maxsize: int = FILE_QUEUE):
        self.latest_only = latest_only
        self.maxsize = 1 if latest_only else maxsize
        self.items: deque[Frame] = deque()
        self.cond = threading.Condition()
        self.closed = False
        self.dropped = 0

    def put(self, frame: Frame, alive: Callable[[], bool]) -> bool:
        """Hand over a frame; live sources replace an unread one. False once the box closed."""
        with self.cond:
            if self.latest_only:
                if self.items:
                    self.items.popleft()
                    self.dropped += 1
            else:
                while len(self.items) >= self.maxsize and not self.closed and alive():
                    self.cond.wait(0.1)
            if self.closed or not alive():
                return False
            self.items.append(frame)
            self.cond.notify_all()
            return True

    def get(self, timeout: float | None) -> Frame | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while not self.items and not self.closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self.cond.wait(remaining)
            if not self.items:
                return None
            frame = self.items.popleft()
            self.cond.notify_all()
            return frame

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def exhausted(self) -> bool:
        with self.cond:
            return self.closed and not self.items


class Source:
    """One video source with its reader thread; see the module docstring for the policy.

    Args:
        config: the source's settings (URL, realtime, loop, watchdog timing).
        source_id: its name in messages; defaults to ``config.id`` or ``cam0``.
    """

    def __init__(self, config: SourceConfig, source_id: str | None = None):
        self.config = config
        self.url = str(config.url).strip()
        self.id = source_id or config.id or "cam0"
        self.kind = source_kind(self.url)
        self.live = self.kind in ("webcam", "stream") or config.realtime
        self._box = _Mailbox(latest_only=self.live)
        self._running = False
        self._gen = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.state = "new"
        self.connecting = False  # the current reader is inside a connection attempt
        self.reconnects = 0
        self.frames_read = 0
        self.last_error: str | None = None
        self.last_frame_at = 0.0  # monotonic time of the last frame or connection attempt
        self.width = 0
        self.height = 0
        self.fps_native = 0.0
        self._rate: deque[float] = deque(maxlen=64)

    # -- lifecycle -------------------------------------------------------
    def start(self) -> Source:
        """Open the source (raising a clear error if it cannot be) and start its reader."""
        cap = self._open_first()
        self._running = True
        self.state = "running"
        self.last_frame_at = time.monotonic()
        self._spawn(cap)
        log.info("source %s: %s %s opened (%dx%d @ %.1f fps%s)", self.id, self.kind, redact(self.url),
                 self.width, self.height, self.fps_native, ", newest frame only" if self.live else "")
        return self

    def stop(self) -> None:
        """Stop reading; a reader blocked in a read exits when that read returns."""
        self._running = False
        with self._lock:
            self._gen += 1
        self._box.close()
        if self.state not in ("ended", "failed"):
            self.state = "stopped"
        for t in self._threads:
            t.join(timeout=2.0)

    def __enter__(self) -> Source:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- consumer side ---------------------------------------------------
    def read(self, timeout: float | None = 1.0) -> Frame | None:
        """The next frame (live: the newest), or None after ``timeout`` or at the end."""
        return self._box.get(timeout)

    @property
    def ended(self) -> bool:
        """True when no frame will ever come again (file finished, or stopped) and none is waiting."""
        return self._box.exhausted()

    @property
    def dropped(self) -> int:
        return self._box.dropped

    def fps(self) -> float:
        """Frames per second read over the last ~64 frames."""
        r = list(self._rate)
        return (len(r) - 1) / (r[-1] - r[0]) if len(r) >= 2 and r[-1] > r[0] else 0.0

    def stats(self) -> dict:
        return {
            "kind": self.kind, "url": redact(self.url), "state": self.state, "live": self.live,
            "frames_read": self.frames_read, "dropped": self.dropped, "reconnects": self.reconnects,
            "fps_in": round(self.fps(), 2), "width": self.width, "height": self.height,
            "last_error": self.last_error,
        }

    # -- opening ---------------------------------------------------------
    def _connect(self) -> _Capture:
        if self.kind == "folder":
            return _FolderCapture(self.url)
        return _CvCapture(self.url, self.kind, self.config.open_timeout, self.config.stall_timeout)

    def _describe(self) -> str:
        return {"webcam": "camera", "stream": "stream", "folder": "image folder", "file": "video file"}[self.kind] + \
            f" '{redact(self.url)}' (source {self.id})"

    def _open_first(self) -> _Capture:
        if self.kind == "file" and not Path(self.url).expanduser().is_file():
            raise FacestreamError(f"Video file not found: {self.url}.",
                                  "Check the path, or give an rtsp:// URL or a camera index.")
        attempts = 1 + (self.config.open_retries if self.kind in ("webcam", "stream") else 0)
        for attempt in range(attempts):
            try:
                cap = self._connect()
                self.fps_native = cap.fps
                self.width, self.height = cap.size
                return cap
            except OSError as exc:
                self.last_error = str(exc)
                if attempt + 1 < attempts:
                    wait = self._backoff(attempt)
                    log.warning("%s: %s; retry %d/%d in %.1fs", self._describe(), exc, attempt + 1, attempts - 1, wait)
                    time.sleep(wait)
        fixes = {
            "webcam": "Check that the camera is connected, not used by another program, and the index is right.",
            "stream": "Check the URL, credentials and that the server is reachable from here.",
            "folder": "Put .jpg/.png images in the folder.",
            "file": "Check that it is a video FFmpeg can decode (mp4, mkv, avi...).",
        }
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        raise FacestreamError(f"Cannot open {self._describe()}{tries}: {self.last_error}.", fixes[self.kind])

    def _backoff(self, attempt: int) -> float:
        return min(self.config.max_backoff, 0.25 * 2 ** attempt)

    # -- reader threads --------------------------------------------------
    def _spawn(self, cap: _Capture | None) -> None:
        with self._lock:
            self._gen += 1
            gen = self._gen
        t = threading.Thread(target=self._reader, args=(gen, cap), name=f"source-{self.id}-{gen}", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def reopen(self, reason: str) -> None:
        """Abandon the current reader and start a fresh one that reconnects (watchdog's remedy)."""
        if not self._running:
            return
        self.connecting = False
        self.reconnects += 1
        self.state = "reconnecting"
        self.last_error = reason
        self.last_frame_at = time.monotonic()
        log.warning("source %s: %s; reconnecting (reconnect #%d)", self.id, reason, self.reconnects)
        self._spawn(None)

    def _current(self, gen: int) -> bool:
        return self._running and gen == self._gen

    def _connected(self, gen: int) -> None:
        """A connection attempt of reader ``gen`` ended; the stall clock restarts now."""
        if self._current(gen):
            self.connecting = False
            self.last_frame_at = time.monotonic()

    def stalled(self, now: float) -> bool:
        """True when the watchdog should abandon the current reader and start a fresh one.

        A reader that is reading is stalled after ``stall_timeout`` without a frame.
        A connection attempt has FFmpeg's own ``open_timeout``; the watchdog only
        steps in if that attempt hangs well past it. A reader waiting out its
        backoff between attempts is left alone: it retries by itself.
        """
        if not (self.live and self._running):
            return False
        idle = now - self.last_frame_at
        if self.connecting:
            return idle > self.config.open_timeout + CONNECT_GRACE
        return self.state == "running" and idle > self.config.stall_timeout

    def _sleep(self, seconds: float, gen: int) -> None:
        end = time.monotonic() + seconds
        while self._current(gen) and time.monotonic() < end:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def _reader(self, gen: int, cap: _Capture | None) -> None:
        attempt = 0
        t0, n0 = time.monotonic(), 0  # realtime pacing origin
        try:
            while self._current(gen):
                if cap is None:
                    self.last_frame_at = time.monotonic()
                    self.connecting = True
                    try:
                        cap = self._connect()
                    except OSError as exc:
                        self._connected(gen)
                        self.last_error = str(exc)
                        wait = self._backoff(attempt)
                        attempt += 1
                        log.warning("source %s: reconnecting failed (%s); next attempt in %.1fs", self.id, exc, wait)
                        self._sleep(wait, gen)
                        continue
                    self._connected(gen)
                    if attempt or self.state == "reconnecting":
                        log.info("source %s: reconnected after %d attempt(s)", self.id, attempt + 1)
                    attempt = 0
                    self.state = "running"
                    t0, n0 = time.monotonic(), 0
                start = time.perf_counter()
                img = cap.read()
                decode_ms = (time.perf_counter() - start) * 1000
                if not self._current(gen):
                    break
                if img is None:
                    cap.release()
                    cap = None
                    if self.kind in ("file", "folder"):
                        if self.config.loop:
                            continue
                        log.info("source %s: end of %s after %d frames", self.id, self.kind, self.frames_read)
                        self.state = "ended"
                        self._box.close()
                        return
                    self.reconnects += 1
                    self.state = "reconnecting"
                    self.last_error = "stream stopped delivering"
                    wait = self._backoff(attempt)
                    attempt += 1
                    log.warning("source %s: lost (%s); reconnect #%d in %.1fs", self.id, self.last_error,
                                self.reconnects, wait)
                    self._sleep(wait, gen)
                    continue
                if self.config.realtime and self.kind in ("file", "folder"):
                    n0 += 1
                    self._sleep(t0 + n0 / cap.fps - time.monotonic(), gen)
                self._deliver(img, decode_ms, gen)
        except Exception as exc:  # never let a reader die silently
            log.exception("source %s: reader crashed", self.id)
            self.last_error = f"reader crashed: {exc}"
            self.state = "failed"
            self._box.close()
        finally:
            if cap is not None:
                cap.release()

    def _deliver(self, img: np.ndarray, decode_ms: float, gen: int) -> None:
        img = as_bgr(img)
        now = time.monotonic()
        self.last_frame_at = now
        self._rate.append(now)
        self.height, self.width = img.shape[:2]
        frame = Frame(self.id, self.frames_read, time.time(), img, time.perf_counter(), decode_ms)
        self.frames_read += 1
        self._box.put(frame, lambda: self._current(gen))


class Watchdog:
    """Reopens live sources that delivered nothing for their ``stall_timeout``.

    One thread watches every source; a stalled source is reopened alone, so the
    others keep flowing. Reopening waits (with backoff) between attempts.
    """

    def __init__(self, sources: list[Source], period: float = 0.2):
        self.sources = sources
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="source-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            now = time.monotonic()
            for s in self.sources:
                if s.stalled(now):
                    what = "connection attempt hung" if s.connecting else "no frame"
                    s.reopen(f"{what} for {now - s.last_frame_at:.1f}s")


def source_ids(configs: list[SourceConfig]) -> list[str]:
    """Each source's id (``config.id``, else cam0, cam1...), known before any source opens.

    Raises:
        FacestreamError: two sources share an id.
    """
    ids = [c.id or f"cam{i}" for i, c in enumerate(configs)]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise FacestreamError(f"Two sources share the id {sorted(dupes)[0]!r}.", "Give each source a unique id.")
    return ids


def open_sources(configs: list[SourceConfig]) -> list[Source]:
    """Start every configured source (ids default to cam0, cam1...); all or none.

    Raises:
        FacestreamError: a source cannot be opened, or two share an id.
    """
    sources: list[Source] = []
    try:
        for sid, cfg in zip(source_ids(configs), configs, strict=True):
            sources.append(Source(cfg, sid).start())
    except BaseException:
        for s in sources:
            s.stop()
        raise
    return sources
