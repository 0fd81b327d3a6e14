"""Where attendance lives: the same place as the gallery (one URL, two backends).

``sqlite:///path.db`` keeps attendance in tables next to the gallery's in the
same file; ``redis://host:port/db`` keeps it under ``facestream:attendance:*``
keys so many workers on many machines share one attendance log. Both make a
person's record an *upsert keyed by (session, person)*, so a restarted process,
a second camera or a second worker can never count anyone twice.
"""

from __future__ import annotations

import abc

from facestream.errors import NotFound
from facestream.stream.attendance.model import Attendance, Record, Session


class SessionNotFound(NotFound):
    """No session by that name, or none at all (the dashboard answers 404)."""


class AttendanceStore(abc.ABC):
    """Sessions, per-person records, snapshots and unknown-face counts."""

    url: str

    # sessions
    @abc.abstractmethod
    def add_session(self, session: Session) -> bool:
        """Insert a session; False (and no change) if one with that name exists."""

    @abc.abstractmethod
    def get_session(self, name: str) -> Session | None: ...

    @abc.abstractmethod
    def sessions(self) -> list[Session]:
        """Every session, oldest start first."""

    def open_sessions(self, since: float) -> list[Session]:
        """Sessions not ended before ``since`` (what a running monitor needs; years of old days stay unread)."""
        return [s for s in self.sessions() if s.end is None or s.end > since]

    @abc.abstractmethod
    def set_end(self, name: str, end: float | None) -> None: ...

    @abc.abstractmethod
    def delete_session(self, name: str) -> None:
        """Remove a session and every record, snapshot and count in it."""

    # records
    @abc.abstractmethod
    def upsert(self, session: str, person_id: str, name: str, on_roster: bool, first_seen: float,
               last_seen: float, camera: str, similarity: float, snapshot: bytes | None = None
               ) -> tuple[Record, bool]:
        """Record a sighting atomically; returns the record and whether it is new.

        first_seen (and its camera) only ever moves earlier, last_seen only later,
        best_similarity only up; the snapshot is replaced only by a better match.
        """

    @abc.abstractmethod
    def records(self, session: str) -> list[Record]: ...

    @abc.abstractmethod
    def snapshot(self, session: str, person_id: str) -> bytes | None: ...

    # unknown faces
    @abc.abstractmethod
    def add_unknown(self, session: str, seen: float, camera: str, snapshot: bytes | None = None) -> int:
        """Count one unknown face (one track); returns the new count."""

    @abc.abstractmethod
    def unknown_count(self, session: str) -> int: ...

    @abc.abstractmethod
    def unknown_snapshots(self, session: str) -> list[tuple[float, str, bytes]]: ...

    @abc.abstractmethod
    def forget_person(self, person_id: str, name: str = "") -> int:
        """Remove a person from every session: records, snapshots, roster entries, and ``name`` where a session's
        roster was chosen by name (gallery deletion).

        Returns how many sessions held them.
        """

    @abc.abstractmethod
    def purge_snapshots(self, ended_before: float) -> int:
        """Drop the face snapshots (people's and strangers') of sessions that ended before ``ended_before``;
        records and counts stay. Returns how many sessions were purged (the retention rule)."""

    def close(self) -> None:  # noqa: B027 - optional for backends
        """Release connections."""

    def latest_session(self) -> Session | None:
        """The session started most recently (what ``report`` uses when none is named)."""
        sessions = [s for s in self.sessions() if s.state() != "scheduled"] or self.sessions()
        return max(sessions, key=lambda s: s.start) if sessions else None

    def require_session(self, name: str | None) -> Session:
        """The named session (or the latest), or a clear error listing what exists."""
        if name is None:
            session = self.latest_session()
            if session is None:
                raise SessionNotFound(f"No attendance sessions in {self.url}.",
                                      "Start one with `facestream attendance start NAME ...` or `facestream run`.")
            return session
        session = self.get_session(name)
        if session is None:
            known = [s.name for s in self.sessions()][-10:]
            hint = f"Known sessions: {', '.join(known)}." if known else "There are no sessions yet."
            raise SessionNotFound(f"Unknown attendance session {name!r}.",
                                  f"{hint} List them with `facestream attendance list`.")
        return session

    def attendance(self, session: Session) -> Attendance:
        """A session's full picture, read from its records and unknown-face count."""
        return Attendance.build(session, self.records(session.name), self.unknown_count(session.name))
