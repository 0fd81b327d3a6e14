"""The dashboard's attendance API on the live server's port.

:class:`AttendanceServer` is the live :class:`facestream.stream.live.server.StreamServer` plus:

* HTTP GET (token-checked like ``/stats``): ``/api/attendance`` (current state),
  ``/api/attendance/sessions``, ``/api/attendance/report?session=&format=csv|xlsx``
  (a download) and ``/api/attendance/snapshot?session=&person=`` (JPEG);
* websocket commands ``{"type": "attendance_start", ...}`` and
  ``{"type": "attendance_stop", "session": ...}``, answered with
  ``{"type": "attendance_reply", "id": ..., "ok": ..., "error": ...}``;
* the attendance state in every ``hello`` (so a reconnecting page is complete at
  once) and every monitor event broadcast to all clients.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from websockets.http11 import Request, Response

from facestream.errors import FacestreamError
from facestream.stream.attendance.commands import AttendanceStart, AttendanceStop
from facestream.stream.attendance.monitor import AttendanceMonitor
from facestream.stream.attendance.report import to_csv, to_xlsx
from facestream.stream.attendance.store import SessionNotFound
from facestream.stream.live.commands import Command
from facestream.stream.live.server import StreamServer

log = logging.getLogger(__name__)
API = "/api/attendance"


def _one(query: dict[str, list[str]], key: str) -> str | None:
    value = query.get(key, [None])[0]
    return value.strip() if isinstance(value, str) and value.strip() else None


class AttendanceServer(StreamServer):
    """The live server with the attendance API; ``monitor`` events go to every client."""

    def __init__(self, *args: Any, monitor: AttendanceMonitor, **kwargs: Any):
        super().__init__(*args, **kwargs)
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
            session = self._run_command(cmd)
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

    # -- HTTP ------------------------------------------------------------------------------------------------
    def _http(self, connection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == API or path.startswith(API + "/"):
            refused = self._refusal(request)
            if refused is not None:
                return refused
            if not self._authorized(request):
                self.rejected += 1
                return self._json(401, {"error": "missing or wrong token",
                                        "fix": "open the dashboard as /#token=YOUR_TOKEN (server.token)"})
            try:
                return self._api(path[len(API):], parse_qs(urlsplit(request.path).query))
            except FacestreamError as exc:
                status = 404 if isinstance(exc, SessionNotFound) else 400
                return self._json(status, {"error": exc.problem, "fix": exc.fix})
        return super()._http(connection, request)

    def _api(self, sub: str, query: dict[str, list[str]]) -> Response:
        store = self.monitor.store
        if sub in ("", "/"):
            name = _one(query, "session")
            if name:
                return self._json(200, [self.monitor.attendance(name).to_json()])
            return self._json(200, self.monitor.current())
        if sub == "/sessions":
            return self._json(200, [s.to_json() for s in store.sessions()])
        if sub == "/report":
            att = self.monitor.attendance(_one(query, "session"))
            session = att.session
            fmt = (_one(query, "format") or "csv").lower()
            if fmt not in ("csv", "xlsx"):
                raise FacestreamError(f"Unknown report format {fmt!r}.", "Use format=csv or format=xlsx.")
            body = to_csv(att) if fmt == "csv" else to_xlsx(att)
            ctype = ("text/csv; charset=utf-8" if fmt == "csv"
                     else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
            resp = self._response(200, body, ctype)
            fname = re.sub(r"[^\w.-]+", "_", session.name) + "." + fmt
            resp.headers["Content-Disposition"] = f"attachment; filename=\"{fname}\"; filename*=UTF-8''{quote(fname)}"
            return resp
        if sub == "/snapshot":
            session = store.require_session(_one(query, "session"))
            person = _one(query, "person") or ""
            jpeg = store.snapshot(session.name, person)
            if jpeg is None:
                return self._json(404, {"error": f"no snapshot of {person!r} in session {session.name!r}"})
            return self._response(200, jpeg, "image/jpeg")
        return self._json(404, {"error": f"not found: {API}{sub}",
                                "endpoints": [API, API + "/sessions", API + "/report", API + "/snapshot"]})
