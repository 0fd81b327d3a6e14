"""Attendance in SQLite: tables in the gallery's own database file.

WAL mode and a busy timeout let the CLI (start/stop/report) and a running
``facestream run`` use the file at the same time.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from facestream import wire
from facestream.errors import FacestreamError
from facestream.gallery.sqlite_store import sqlite_path
from facestream.stream.attendance.model import Record, Session, strip_person
from facestream.stream.attendance.store import AttendanceStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attendance_sessions (
    name TEXT PRIMARY KEY, start REAL NOT NULL, data TEXT NOT NULL, end_ts REAL);
CREATE INDEX IF NOT EXISTS attendance_sessions_end ON attendance_sessions(end_ts);
CREATE TABLE IF NOT EXISTS attendance_records (
    session TEXT NOT NULL, person_id TEXT NOT NULL, name TEXT NOT NULL, on_roster INTEGER NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, camera TEXT NOT NULL, best_similarity REAL NOT NULL,
    snapshot BLOB, PRIMARY KEY (session, person_id));
CREATE TABLE IF NOT EXISTS attendance_unknown (
    session TEXT NOT NULL, seen REAL NOT NULL, camera TEXT NOT NULL, snapshot BLOB);
CREATE INDEX IF NOT EXISTS attendance_unknown_session ON attendance_unknown(session);
"""


class SQLiteAttendanceStore(AttendanceStore):
    def __init__(self, url: str):
        self.url = url
        path = Path(sqlite_path(url))  # the gallery's own file: one rule for both
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA secure_delete=ON")  # deleted snapshots' bytes are overwritten, not left
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise FacestreamError(f"Cannot open the attendance database {path} ({exc}).",
                                  "Check gallery.url and that the folder is writable.") from None
        self._lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, one thread at a time; a locked, read-only or full file becomes a FacestreamError
        (what the monitor catches and retries, so a live run keeps going)."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise FacestreamError(f"Attendance database error in {self.url} ({exc}).",
                                      "Check that the file is writable and the disk not full; "
                                      "attendance resumes when the database is writable.") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it or nothing."""
        with self._locked() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT may have rolled back already
                    db.execute("ROLLBACK")
                raise

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._locked() as db:
            return db.execute(sql, args).fetchall()

    def add_session(self, session: Session) -> bool:
        with self._locked() as db:
            cur = db.execute("INSERT OR IGNORE INTO attendance_sessions VALUES (?, ?, ?, ?)",
                                   (session.name, session.start, wire.dumps(session.to_dict()), session.end))
            return cur.rowcount == 1

    def get_session(self, name: str) -> Session | None:
        rows = self._q("SELECT data FROM attendance_sessions WHERE name = ?", (name,))
        return Session.from_dict(json.loads(rows[0][0])) if rows else None

    def sessions(self) -> list[Session]:
        rows = self._q("SELECT data FROM attendance_sessions ORDER BY start, name")
        return [Session.from_dict(json.loads(r[0])) for r in rows]

    def open_sessions(self, since: float) -> list[Session]:
        rows = self._q("SELECT data FROM attendance_sessions WHERE end_ts IS NULL OR end_ts > ? ORDER BY start, name",
                       (since,))
        return [Session.from_dict(json.loads(r[0])) for r in rows]

    def set_end(self, name: str, end: float | None) -> None:
        with self._transaction() as db:
            row = db.execute("SELECT data FROM attendance_sessions WHERE name = ?", (name,)).fetchone()
            if row:
                data = json.loads(row[0])
                data["end"] = end
                db.execute("UPDATE attendance_sessions SET data = ?, end_ts = ? WHERE name = ?",
                           (wire.dumps(data), end, name))

    def delete_session(self, name: str) -> None:
        with self._transaction() as db:
            for table, col in (("attendance_sessions", "name"), ("attendance_records", "session"),
                               ("attendance_unknown", "session")):
                db.execute(f"DELETE FROM {table} WHERE {col} = ?", (name,))
        self._checkpoint()

    def upsert(self, session, person_id, name, on_roster, first_seen, last_seen, camera, similarity,
               snapshot=None):
        with self._transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO attendance_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session, person_id, name, int(on_roster), first_seen, last_seen, camera, similarity, snapshot))
            created = cur.rowcount == 1
            if not created:
                db.execute(
                    """UPDATE attendance_records SET
                       camera = CASE WHEN ? < first_seen THEN ? ELSE camera END,
                       first_seen = MIN(first_seen, ?), last_seen = MAX(last_seen, ?),
                       snapshot = CASE WHEN ? IS NOT NULL AND (? > best_similarity OR snapshot IS NULL)
                                  THEN ? ELSE snapshot END,
                       best_similarity = MAX(best_similarity, ?)
                       WHERE session = ? AND person_id = ?""",
                    (first_seen, camera, first_seen, last_seen, snapshot, similarity, snapshot, similarity, session,
                     person_id))
            row = db.execute(
                "SELECT session, person_id, name, on_roster, first_seen, last_seen, camera, best_similarity, "
                "snapshot IS NOT NULL FROM attendance_records WHERE session = ? AND person_id = ?",
                (session, person_id)).fetchone()
        return _record(row), created

    def records(self, session: str) -> list[Record]:
        rows = self._q(
            "SELECT session, person_id, name, on_roster, first_seen, last_seen, camera, best_similarity, "
            "snapshot IS NOT NULL FROM attendance_records WHERE session = ? ORDER BY first_seen", (session,))
        return [_record(r) for r in rows]

    def snapshot(self, session: str, person_id: str) -> bytes | None:
        rows = self._q("SELECT snapshot FROM attendance_records WHERE session = ? AND person_id = ?",
                       (session, person_id))
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else None

    def add_unknown(self, session, seen, camera, snapshot=None):
        with self._transaction() as db:
            db.execute("INSERT INTO attendance_unknown VALUES (?, ?, ?, ?)", (session, seen, camera, snapshot))
            return db.execute("SELECT COUNT(*) FROM attendance_unknown WHERE session = ?",
                                    (session,)).fetchone()[0]

    def unknown_count(self, session: str) -> int:
        return self._q("SELECT COUNT(*) FROM attendance_unknown WHERE session = ?", (session,))[0][0]

    def unknown_snapshots(self, session: str) -> list[tuple[float, str, bytes]]:
        rows = self._q("SELECT seen, camera, snapshot FROM attendance_unknown WHERE session = ? "
                       "AND snapshot IS NOT NULL ORDER BY seen", (session,))
        return [(r[0], r[1], bytes(r[2])) for r in rows]

    def forget_person(self, person_id: str, person_name: str = "") -> int:
        touched = set()
        with self._transaction() as db:
            for (name,) in db.execute("SELECT session FROM attendance_records WHERE person_id = ?",
                                      (person_id,)).fetchall():
                touched.add(name)
            db.execute("DELETE FROM attendance_records WHERE person_id = ?", (person_id,))
            for name, data in db.execute("SELECT name, data FROM attendance_sessions").fetchall():
                d = json.loads(data)
                if strip_person(d, person_id, person_name):
                    touched.add(name)
                    db.execute("UPDATE attendance_sessions SET data = ? WHERE name = ?", (wire.dumps(d), name))
        self._checkpoint()
        return len(touched)

    def purge_snapshots(self, ended_before: float) -> int:
        with self._transaction() as db:
            names = [r[0] for r in db.execute("SELECT name FROM attendance_sessions WHERE end_ts IS NOT NULL "
                                              "AND end_ts < ?", (ended_before,)).fetchall()]
            for name in names:
                db.execute("UPDATE attendance_records SET snapshot = NULL WHERE session = ? AND snapshot IS NOT NULL",
                           (name,))
                db.execute("UPDATE attendance_unknown SET snapshot = NULL WHERE session = ? AND snapshot IS NOT NULL",
                           (name,))
            # open sessions (no end: a default session that runs for months) lose the snapshots of faces last
            # seen before the cut, one by one
            opened = "SELECT name FROM attendance_sessions WHERE end_ts IS NULL"
            db.execute(f"UPDATE attendance_records SET snapshot = NULL WHERE snapshot IS NOT NULL AND last_seen < ? "
                       f"AND session IN ({opened})", (ended_before,))
            db.execute(f"UPDATE attendance_unknown SET snapshot = NULL WHERE snapshot IS NOT NULL AND seen < ? "
                       f"AND session IN ({opened})", (ended_before,))
        self._checkpoint()
        return len(names)

    def _checkpoint(self) -> None:
        """Fold the write-ahead log into the file and empty it: a deleted face must not linger in the WAL."""
        with self._locked() as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _record(row: tuple) -> Record:
    return Record(session=row[0], person_id=row[1], name=row[2], on_roster=bool(row[3]), first_seen=row[4],
                  last_seen=row[5], camera=row[6], best_similarity=row[7], has_snapshot=bool(row[8]))
