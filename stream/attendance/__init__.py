"""Attendance: sessions with rosters, the presence rule, persistence next to the gallery, reports.

``AttendanceMonitor`` is the pipeline listener; ``open_attendance_store(url)``
opens the store for the gallery URL; ``create_session``/``stop_session`` are what
the CLI and the dashboard call; ``to_csv``/``to_xlsx`` export a session.
"""

from facestream.gallery import store_kind
from facestream.stream.attendance.model import ABSENT, LATE, PRESENT, Attendance, Record, RosterEntry, Session
from facestream.stream.attendance.monitor import AttendanceMonitor
from facestream.stream.attendance.report import report_rows, to_csv, to_xlsx
from facestream.stream.attendance.sessions import create_session, stop_session
from facestream.stream.attendance.store import AttendanceStore

__all__ = [
    "ABSENT", "LATE", "PRESENT", "Attendance", "AttendanceMonitor", "AttendanceStore", "Record", "RosterEntry",
    "Session", "create_session", "open_attendance_store", "report_rows", "stop_session", "to_csv", "to_xlsx",
]


def open_attendance_store(url: str) -> AttendanceStore:
    """The attendance store for a gallery URL (``sqlite:///...`` or ``redis://...``)."""
    url = (url or "").strip()
    if store_kind(url) == "redis":
        from facestream.stream.attendance.redis_backend import RedisAttendanceStore

        return RedisAttendanceStore(url)
    from facestream.stream.attendance.sqlite_backend import SQLiteAttendanceStore

    return SQLiteAttendanceStore(url)
