"""The dashboard's attendance API on the live server's port.

:class:`AttendanceExtension` plugs into the live :class:`facestream.stream.serve.server.StreamServer`
(:mod:`facestream.stream.serve.extensions`) and adds:

* HTTP GET routes in the API (token-checked like ``/stats``): ``/api/attendance`` (current
  state), ``/api/attendance/sessions``, ``/api/attendance/report?session=&format=csv|xlsx``
  (a download) and ``/api/attendance/snapshot?session=&person=`` (JPEG), built by
  :func:`attendance_router`;
* websocket commands ``{"type": "attendance_start", ...}`` and
  ``{"type": "attendance_stop", "session": ...}``, answered with
  ``{"type": "attendance_reply", "id": ..., "ok": ..., "error": ...}``;
* the attendance state in every ``hello`` (so a reconnecting page is complete at
  once) and every monitor event broadcast to all clients.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, ClassVar
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from facestream.errors import FacestreamError, NotFound
from facestream.stream.attendance.commands import AttendanceStart, AttendanceStop
from facestream.stream.attendance.monitor import AttendanceMonitor
from facestream.stream.attendance.report import to_csv, to_xlsx
from facestream.stream.serve.commands import Command
from facestream.stream.serve.extensions import Publish, ServerExtension

log = logging.getLogger(__name__)
API = "/api/attendance"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _clean(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def attendance_router(monitor: AttendanceMonitor) -> APIRouter:
    """The attendance routes (mounted under ``/api/attendance``); store calls run off the event loop."""
    router = APIRouter(prefix="/attendance", tags=["attendance"])

    async def off_loop(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    @router.get("", summary="Attendance now (or of one session)")
    async def current(session: str | None = None) -> JSONResponse:
        name = _clean(session)
        if name:
            att = await off_loop(monitor.attendance, name)
            return JSONResponse([att.to_json()])
        return JSONResponse(await off_loop(monitor.current))

    @router.get("/sessions", summary="Every session")
    async def sessions() -> JSONResponse:
        return JSONResponse([s.to_json() for s in await off_loop(monitor.store.sessions)])

    @router.get("/report", summary="A session's report (CSV or XLSX download)",
                response_class=Response, responses={200: {"content": {"text/csv": {}, XLSX: {}}}})
    async def report(session: str | None = None, format: str = Query("csv", description="csv or xlsx")) -> Response:
        format = format.strip().lower()
        if format not in ("csv", "xlsx"):
            raise FacestreamError(f"Unknown report format {format[:20]!r}.", "Use format=csv or format=xlsx.")
        att = await off_loop(monitor.attendance, _clean(session))
        body = to_csv(att) if format == "csv" else to_xlsx(att)
        fname = re.sub(r"[^\w.-]+", "_", att.session.name) + "." + format
        return Response(body, 200, media_type="text/csv; charset=utf-8" if format == "csv" else XLSX, headers={
            "Content-Disposition": f"attachment; filename=\"{fname}\"; filename*=UTF-8''{quote(fname)}",
            "Cache-Control": "no-store"})

    @router.get("/snapshot", summary="A person's face snapshot in a session (JPEG)",
                response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
    async def snapshot(session: str | None = None, person: str = "") -> Response:
        found = await off_loop(monitor.store.require_session, _clean(session))
        jpeg = await off_loop(monitor.store.snapshot, found.name, person.strip())
        if jpeg is None:
            raise NotFound(f"No snapshot of {person!r} in session {found.name!r}.",
                           "Snapshots are kept only with attendance.keep_snapshots.")
        return Response(jpeg, 200, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    return router


class AttendanceExtension(ServerExtension):
    """Attendance on the live server: its routes, the start/stop commands, the state in every hello, and
    every monitor event to every client."""

    commands: ClassVar[dict[str, type[Command]]] = {"attendance_start": AttendanceStart,
                                                    "attendance_stop": AttendanceStop}
    replies: ClassVar[dict[str, str]] = {"attendance_start": "attendance_reply", "attendance_stop": "attendance_reply"}

    def __init__(self, monitor: AttendanceMonitor):
        self.monitor = monitor
        self.router = attendance_router(monitor)

    def bind(self, publish: Publish) -> None:
        self.monitor.add_listener(publish)

    # -- hello: the page is complete as soon as it connects ---------------------------------------------
    def hello(self) -> dict[str, Any]:
        try:
            return {"attendance": self.monitor.current(), "attendance_recent": self.monitor.recent()}
        except FacestreamError as exc:
            return {"attendance_error": str(exc)}

    # -- websocket commands --------------------------------------------------------------------------------
    async def act(self, cmd: Command) -> dict[str, Any]:
        assert isinstance(cmd, AttendanceStart | AttendanceStop)
        reply: dict[str, Any] = {"type": "attendance_reply", "id": cmd.id, "command": cmd.type}
        try:
            session = await asyncio.get_running_loop().run_in_executor(None, self._run_command, cmd)
            reply.update(ok=True, session=session.to_json())
        except FacestreamError as exc:
            reply.update(ok=False, error=str(exc))
        return reply

    def _run_command(self, cmd: AttendanceStart | AttendanceStop):
        if isinstance(cmd, AttendanceStop):
            return self.monitor.stop_session(cmd.session or None)
        now = self.monitor.clock()
        names = cmd.people.split(",") if isinstance(cmd.people, str) else cmd.people
        cameras = cmd.cameras.split(",") if isinstance(cmd.cameras, str) else cmd.cameras
        kwargs: dict[str, Any] = {"cameras": cameras, "roster": (cmd.roster or "").strip() or None, "names": names}
        if cmd.late_after_minutes is not None:
            kwargs["late_after_s"] = cmd.late_after_minutes * 60
        if cmd.duration_minutes is not None:
            kwargs["end"] = now + cmd.duration_minutes * 60
        return self.monitor.start_session(cmd.name, **kwargs)
