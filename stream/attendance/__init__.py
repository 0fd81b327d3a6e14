"""Attendance: sessions with rosters, the presence rule, persistence next to the gallery, reports.

``AttendanceMonitor`` is the pipeline listener; ``open_attendance_store(url)``
opens the store for the gallery URL; ``create_session``/``stop_session`` are what
the CLI and the dashboard call; ``to_csv``/``to_xlsx`` export a session.
"""

from stream.attendance.model import ABSENT, LATE, PRESENT, Attendance, Record, RosterEntry, Session
from stream.attendance.monitor import AttendanceMonitor
from stream.attendance.report import report_rows, to_csv, to_xlsx
from stream.attendance.sessions import create_session, stop_session
from stream.attendance.store import AttendanceStore, open_attendance_store

__all__ = [
    "ABSENT", "LATE", "PRESENT", "Attendance", "AttendanceMonitor", "AttendanceStore", "Record", "RosterEntry",
    "Session", "create_session", "open_attendance_store", "report_rows", "stop_session", "to_csv", "to_xlsx",
]
