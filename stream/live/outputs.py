"""The live runtime's file outputs: every result as JSON lines, the annotated video.

Both are :class:`facestream.stream.live.pipeline.Pipeline` listeners, called in the source's
worker thread; ``close()`` flushes them when the run ends.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facestream import wire
from facestream.errors import FacestreamError
from facestream.stream.engine.draw import draw_faces

if TYPE_CHECKING:
    from facestream.stream.live.pipeline import LiveResult, Pipeline, TrackEvent
    from facestream.stream.live.sources import Source

log = logging.getLogger(__name__)


class JsonlWriter:
    """Writes every result and event as one JSON line (``--jsonl FILE``); a pipeline listener pair."""

    def __init__(self, path: str):
        try:
            self._fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise FacestreamError(f"Cannot write {path} ({exc.strerror}).", "Check the --jsonl path.") from None
        self._lock = threading.Lock()
        self.lines = 0

    def attach(self, pipeline: Pipeline) -> JsonlWriter:
        pipeline.add_listener(self.on_result, self.on_event)
        return self

    def _write(self, obj: dict[str, Any]) -> None:
        line = wire.dumps(obj, separators=(",", ":"))
        with self._lock:
            if not self._fh.closed:
                self._fh.write(line + "\n")
                self.lines += 1

    def on_result(self, result: LiveResult, rgb: np.ndarray) -> None:
        self._write(result.to_json())

    def on_event(self, event: TrackEvent) -> None:
        self._write(event.to_json())

    def close(self) -> None:
        with self._lock:
            self._fh.close()


class VideoRecorder:
    """Writes the annotated frames of each source to an MP4 (``--record out.mp4``).

    With several sources, each gets its own file: ``out_cam0.mp4``, ``out_cam1.mp4``.
    With ``blur_unknown`` (``server.blur_unknown``) unknown faces are pixelated
    in the video as they are in the viewers' frames. Attached before the pipeline
    starts, it finds the sources (for their frame rate) at their first frame.
    """

    def __init__(self, path: str, sources: list[Source] | None = None, blur_unknown: bool = False):
        self.blur_unknown = blur_unknown
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FacestreamError(f"Cannot record to {path}: the folder does not exist.", "Create it or fix --record.")
        self.sources = {s.id: s for s in sources or []}
        self._pipeline: Pipeline | None = None
        self._writers: dict[str, Any] = {}
        self._sizes: dict[str, tuple[int, int]] = {}  # (width, height) each file was opened with
        self._failed: set[str] = set()  # sources whose file could not be opened: not retried every frame
        self._lock = threading.Lock()

    def file_for(self, source_id: str):
        count = len(self._pipeline.source_configs) if self._pipeline is not None else len(self.sources)
        if count == 1:
            return self.path
        return self.path.with_name(f"{self.path.stem}_{source_id}{self.path.suffix or '.mp4'}")

    def attach(self, pipeline: Pipeline) -> VideoRecorder:
        self._pipeline = pipeline
        pipeline.add_listener(self.on_result)
        return self

    def _fps(self, source_id: str) -> float:
        src = self.sources.get(source_id)
        if src is None and self._pipeline is not None:
            src = next((s for s in self._pipeline.sources if s.id == source_id), None)
        return src.fps_native if src and src.fps_native else 30.0

    def _open(self, result: LiveResult):
        """The source's writer, or None (logged once) when the file cannot be written."""
        import cv2

        out = self.file_for(result.source_id)
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), self._fps(result.source_id),
                                 (result.width, result.height))
        if not writer.isOpened():
            self._failed.add(result.source_id)
            log.error("cannot record %s to %s; use an .mp4 or .avi path you can write. Not recording %s.",
                      result.source_id, out, result.source_id)
            return None
        self._writers[result.source_id] = writer
        self._sizes[result.source_id] = (result.width, result.height)
        log.info("recording %s to %s", result.source_id, out)
        return writer

    def on_result(self, result: LiveResult, rgb: np.ndarray) -> None:
        import cv2

        with self._lock:
            if result.source_id in self._failed:
                return
            writer = self._writers.get(result.source_id)
            if writer is None:
                writer = self._open(result)
        if writer is None:
            return
        annotated = draw_faces(rgb, result.faces, blur_unknown=self.blur_unknown, landmarks=False)
        size = self._sizes[result.source_id]
        if annotated.shape[1::-1] != size:  # the camera changed resolution: the file keeps its first size
            annotated = cv2.resize(annotated, size, interpolation=cv2.INTER_AREA)
        writer.write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        with self._lock:
            for w in self._writers.values():
                w.release()
            self._writers.clear()
