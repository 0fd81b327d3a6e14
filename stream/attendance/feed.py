"""Attendance on its own thread: a camera's pipeline hands each frame's faces over and goes on.

The monitor writes to its store, and a store that stalls (Redis paused, a slow disk) once froze
recognition with it: two frames in 20 s on every camera. The pipeline now only appends to a
bounded queue; one thread applies the presence rule and writes (through the monitor's outbox,
so a write that fails is kept, not lost). When the queue is full the oldest frame is dropped
and counted; frames are kept as pictures (for snapshots) only for the newest few, so a long
stall costs faces and timestamps, not gigabytes.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facestream.stream.attendance.monitor import AttendanceMonitor
from facestream.stream.engine.faces import Faces, FrameResult

log = logging.getLogger(__name__)

QUEUE_FRAMES = 2000  # about 80 s of one 25 fps camera
IMAGES_KEPT = 8  # queued frames that keep their picture (for snapshots); older ones keep only their faces


@dataclass
class _Seen:
    camera: str
    ts: float
    faces: Faces
    rgb: np.ndarray | None


class AttendanceFeed:
    """Feeds a monitor from a pipeline without making the pipeline wait.

    Args:
        monitor: the attendance monitor (its listeners are called from this feed's thread).
        accepts: ``fn(camera) -> bool``; frames of a camera it refuses are skipped (a worker passes
            "do I still hold this camera's lease?", so a worker cut off records nothing).
    """

    def __init__(self, monitor: AttendanceMonitor, accepts: Callable[[str], bool] | None = None,
                 queue_frames: int = QUEUE_FRAMES):
        self.monitor = monitor
        self.accepts = accepts
        self._queue: deque[_Seen] = deque()
        self._with_image: deque[_Seen] = deque()
        self._limit = queue_frames
        self._wants_images = monitor.config.keep_snapshots or monitor.config.keep_unknown_snapshots
        self._cv = threading.Condition()
        self._stop = False
        self.observed = 0
        self.dropped = 0  # frames dropped because the queue was full (the store too slow for too long)
        self.refused = 0  # frames of a camera ``accepts`` refused
        self._thread = threading.Thread(target=self._run, name="attendance", daemon=True)

    def start(self) -> AttendanceFeed:
        self._thread.start()
        return self

    def on_result(self, result: FrameResult, rgb: np.ndarray | None = None) -> None:
        """Pipeline listener: queue the frame and return at once."""
        seen = _Seen(result.source_id, result.timestamp, result.faces, rgb if self._wants_images else None)
        with self._cv:
            if len(self._queue) >= self._limit:
                old = self._queue.popleft()
                old.rgb = None
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 500 == 0:
                    log.warning("attendance is behind (the store is slow or away): %d frame(s) dropped so far",
                                self.dropped)
            self._queue.append(seen)
            if seen.rgb is not None:
                self._with_image.append(seen)
                while len(self._with_image) > IMAGES_KEPT:
                    self._with_image.popleft().rgb = None
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                if not self._queue and not self._stop:
                    self._cv.wait(1.0)
                if not self._queue and self._stop:
                    return
                seen = self._queue.popleft() if self._queue else None
            if seen is None:  # idle for a second: what the store could not take is tried again
                self.monitor.retry_unsent()
                continue
            if self.accepts is not None and not self.accepts(seen.camera):
                self.refused += 1
                continue
            try:
                self.monitor.observe(seen.camera, seen.ts, seen.faces, seen.rgb)
                self.observed += 1
            except Exception:  # one bad frame must not end attendance
                log.exception("attendance: a frame of %s failed", seen.camera)

    def stop(self, timeout: float = 30.0) -> None:
        """Record what is queued (up to ``timeout``), then end the thread."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._queue), "observed": self.observed, "dropped": self.dropped,
                "refused": self.refused, **{f"outbox_{k}": v for k, v in self.monitor.outbox.stats().items()}}
