"""Wiring attendance (and the dashboard) into ``facestream run``.

``facestream run`` calls :func:`attendance_for_run` with its sources' ids and
adds ``monitor.on_result`` as a pipeline result listener before the pipeline
starts; with ``--dashboard`` it serves through :func:`dashboard_server` instead
of a plain :class:`facestream.stream.live.server.StreamServer`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from facestream.stream.attendance import open_attendance_store
from facestream.stream.attendance.monitor import AttendanceMonitor
from facestream.stream.attendance.roster import gallery_people
from facestream.stream.config import Config

log = logging.getLogger(__name__)


def attendance_for_run(config: Config, cameras: list[str], session: str | None = None,
                       threshold: float | None = None) -> AttendanceMonitor:
    """The monitor a live run records with.

    Args:
        cameras: the run's source ids.
        session: record into this existing session (it must not have ended); None: the day's session
            (``attendance.default_session``). Sessions started elsewhere, or by the timetable, are
            recorded too whenever they watch one of these cameras.
        threshold: the similarity a frame needs (the matcher's threshold).

    The store is ``config.gallery.url``, the gallery recognition searches (``load_config`` applies
    ``$FACESTREAM_GALLERY`` there), so names and attendance come from one place.

    Raises:
        FacestreamError: unknown or ended session, unreachable store.
    """
    store = open_attendance_store(config.gallery.url)
    monitor = AttendanceMonitor(store, config.attendance, people=gallery_people(config.gallery.url),
                                threshold=threshold, require_live=config.liveness.mode == "require")
    monitor.bind_run(cameras, session)
    return monitor


def dashboard_server(config: Config, monitor: AttendanceMonitor, stats: Callable[[], dict] | None = None,
                     **kwargs: Any):
    """The websocket/HTTP server with the dashboard and the attendance API (same port, same token)."""
    from facestream.stream.attendance.web import AttendanceServer

    return AttendanceServer(config.server, stats=stats, monitor=monitor, **kwargs)
