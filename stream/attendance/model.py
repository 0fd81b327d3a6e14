"""Attendance data: sessions, per-person records and the statuses derived from them.

Statuses are *derived* (from a record's first sighting and the session's start
and late delay) rather than stored, so a restart, a second worker or a changed
late delay can never leave a stale "present" next to a "late" for one person.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from facestream.errors import FacestreamError

PRESENT = "present"
LATE = "late"
ABSENT = "absent"
SessionKind = Literal["manual", "scheduled", "default"]
_NAME_RE = re.compile(r"^[\w][\w .:@+-]{0,99}$")


def check_session_name(name: str) -> str:
    """A session name is its key in the store and appears in URLs and file names."""
    name = (name or "").strip()
    if not _NAME_RE.match(name):
        raise FacestreamError(
            f"Bad session name {name!r}.",
            "Use 1-100 letters, digits, spaces or . _ - : @ + (starting with a letter or digit).",
        )
    return name


@dataclass
class RosterEntry:
    """One person expected in a session, frozen when the session is created."""

    person_id: str
    name: str


@dataclass
class Session:
    """An attendance session: who is expected, on which cameras, and when.

    Attributes:
        name: unique key, e.g. ``"cs101 2026-11-22"``.
        cameras: source ids the session watches; empty means every camera.
        roster: the expected people, resolved from the gallery when created.
        selector: how the roster was chosen (``"group=cs101"``), for display.
        start: epoch seconds.
        end: epoch seconds, or None while open-ended (until stopped).
        late_after_s: first seen after ``start + late_after_s`` is late.
        kind: manual (CLI/dashboard), scheduled (config timetable) or default (the day's catch-all).
        created: epoch seconds.
    """

    name: str
    cameras: list[str] = field(default_factory=list)
    roster: list[RosterEntry] = field(default_factory=list)
    selector: str = ""
    start: float = field(default_factory=time.time)
    end: float | None = None
    late_after_s: float = 600.0
    kind: SessionKind = "manual"
    created: float = field(default_factory=time.time)

    def state(self, now: float | None = None) -> str:
        """``scheduled`` before its start, ``active`` while running, ``closed`` after its end."""
        now = time.time() if now is None else now
        if now < self.start:
            return "scheduled"
        if self.end is not None and now >= self.end:
            return "closed"
        return "active"

    def watches(self, camera: str) -> bool:
        return not self.cameras or camera in self.cameras

    def covers(self, ts: float) -> bool:
        return ts >= self.start and (self.end is None or ts < self.end)

    def roster_ids(self) -> set[str]:
        return {r.person_id for r in self.roster}

    def overlaps(self, other: Session) -> bool:
        """True if both sessions watch a common camera at a common time."""
        if self.cameras and other.cameras and not set(self.cameras) & set(other.cameras):
            return False
        inf = float("inf")
        return self.start < (other.end if other.end is not None else inf) and other.start < (
            self.end if self.end is not None else inf
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Session:
        d = dict(d)
        d["roster"] = [RosterEntry(**r) for r in d.get("roster", [])]
        d["cameras"] = list(d.get("cameras") or [])
        return cls(**d)

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        d = self.to_dict()
        d["state"] = self.state(now)
        return d


def strip_person(d: dict[str, Any], person_id: str, name: str) -> bool:
    """Remove a person from a stored session (its dict form): their roster place, and their name or id where the
    roster was chosen by name (``selector``). Returns whether anything changed (erasure: no trace of the name)."""
    roster = d.get("roster", [])
    kept = [r for r in roster if r.get("person_id") != person_id]
    mentions = {person_id.casefold(), name.casefold()} - {""}
    parts = [p for p in str(d.get("selector", "")).split(", ") if p]
    kept_parts = [p for p in parts if p.strip().casefold() not in mentions]
    if len(kept) == len(roster) and len(kept_parts) == len(parts):
        return False
    d["roster"] = kept
    d["selector"] = ", ".join(kept_parts)
    return True


@dataclass
class Record:
    """What the store keeps for one person in one session (the snapshot JPEG is kept apart)."""

    session: str
    person_id: str
    name: str
    on_roster: bool
    first_seen: float
    last_seen: float
    camera: str
    best_similarity: float
    has_snapshot: bool = False

    def status(self, session: Session) -> str:
        return LATE if self.first_seen > session.start + session.late_after_s else PRESENT

    def to_json(self, session: Session) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status(session)
        return d


@dataclass
class Attendance:
    """A session's full picture: roster with statuses, people seen but not on the roster, unknowns."""

    session: Session
    roster: list[dict[str, Any]]
    extra: list[dict[str, Any]]
    unknown: int

    @classmethod
    def build(cls, session: Session, records: list[Record], unknown: int) -> Attendance:
        by_id = {r.person_id: r for r in records}
        roster = []
        for entry in session.roster:
            rec = by_id.get(entry.person_id)
            if rec is None:
                roster.append({"person_id": entry.person_id, "name": entry.name, "status": ABSENT,
                               "first_seen": None, "last_seen": None, "camera": None,
                               "best_similarity": None, "has_snapshot": False, "on_roster": True})
            else:
                row = rec.to_json(session)
                row["name"] = entry.name
                roster.append(row)
        ids = session.roster_ids()
        extra = [r.to_json(session) for r in sorted(records, key=lambda r: r.first_seen) if r.person_id not in ids]
        return cls(session=session, roster=roster, extra=extra, unknown=unknown)

    def counts(self) -> dict[str, int]:
        out = {PRESENT: 0, LATE: 0, ABSENT: 0}
        for row in self.roster:
            out[row["status"]] += 1
        out["not_on_roster"] = len(self.extra)
        out["unknown"] = self.unknown
        return out

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        return {"type": "attendance_state", "session": self.session.to_json(now), "roster": self.roster,
                "extra": self.extra, "unknown": self.unknown, "counts": self.counts()}
