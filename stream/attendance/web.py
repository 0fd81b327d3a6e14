"""The dashboard's attendance API on the live server's port.

:class:`AttendanceServer` is the live :class:`facestream.stream.live.server.StreamServer` plus:

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
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import JSONResponse, Response

from facestream.errors import FacestreamError, NotFound
from facestream.stream.attendance.commands import AttendanceStart, AttendanceStop
from facestream.stream.attendance.monitor import AttendanceMonitor
from facestream.stream.attendance.report import to_csv, to_xlsx
from facestream.stream.config import ServerConfig
from facestream.stream.live.commands import Command
from facestream.stream.live.http_api import new_api
from facestream.stream.live.server import StreamServer

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


class AttendanceServer(StreamServer):
    """The live server with the attendance API; ``monitor`` events go to every client.

    Args:
        api: the HTTP API app to add the attendance routes to; None: an API of attendance routes only.
    """

    def __init__(self, config: ServerConfig | None = None, *, monitor: AttendanceMonitor, api: FastAPI | None = None,
                 **kwargs: Any):
        api = api if api is not None else new_api("facestream attendance")
        api.include_router(attendance_router(monitor))
        super().__init__(config, api=api, **kwargs)
        self.monitor = monitor
        monitor.add_listener(self.publish)

    # -- hello: the page is complete as soon as it connects ---------------------------------------------
    def _hello(self, client) -> dict:
        hello = super()._hello(client)
        try:
            hello["attendance"] = self.monitor.current()
            hello["attendance_recent"] = self.monitor.recent()
        except FacestreamError as exc:
            hello["attendance_error"] = str(exc)
        return hello

    # -- websocket commands --------------------------------------------------------------------------------
    COMMANDS = {**StreamServer.COMMANDS, "attendance_start": AttendanceStart, "attendance_stop": AttendanceStop}
    REPLIES = {**StreamServer.REPLIES, "attendance_start": "attendance_reply", "attendance_stop": "attendance_reply"}

    async def _act(self, client, cmd: Command) -> dict:
        if not isinstance(cmd, AttendanceStart | AttendanceStop):
            return await super()._act(client, cmd)
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
