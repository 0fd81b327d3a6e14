"""Starting and stopping sessions, with the checks a user needs to hear about.

Used by the CLI, the dashboard and the timetable alike, so every way of starting
a session refuses the same mistakes: a duplicate name, an end before the start,
a negative late delay, a roster naming people not enrolled, or two sessions on one camera at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from facestream.errors import FacestreamError
from facestream.stream.attendance.model import RosterEntry, Session, SessionKind, check_session_name
from facestream.stream.attendance.roster import PersonLike, resolve_roster
from facestream.stream.attendance.store import AttendanceStore

MAX_DEFAULT_ROSTER = 5000


def _when(ts: float | None) -> str:
    return "open end" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


MAX_LATE_MINUTES = 24 * 60  # a late delay beyond a day is a typo
MAX_SESSION_MINUTES = 31 * 24 * 60  # sessions end within a month


def create_session(store: AttendanceStore, people: Callable[[], Iterable[PersonLike]], name: str, *,
                   cameras: Iterable[str] = (), roster: str | None = None, names: Iterable[str] = (),
                   start: float | None = None, end: float | None = None, late_after_s: float = 600.0,
                   kind: SessionKind = "manual", now: float | None = None) -> Session:
    """Validate, resolve the roster and store a new session.

    Args:
        people: returns the enrolled people (called once, only if a roster is asked for).
        roster: metadata selector (``group=cs101``); ``names``: people by name or id.
        start: epoch seconds (default now); ``end``: epoch seconds or None (until stopped).

    Raises:
        FacestreamError: bad name, duplicate, end before start, negative late delay, roster problems, overlap.
    """
    now = time.time() if now is None else now
    name = check_session_name(name)
    names = [n for n in names if n.strip()]
    cameras = sorted({c.strip() for c in cameras if c.strip()})
    start = now if start is None else float(start)
    if not math.isfinite(start) or (end is not None and not math.isfinite(float(end))):
        raise FacestreamError(f"Session {name!r} has a start or end that is not a time.", "Give real times.")
    if end is not None and end - start > MAX_SESSION_MINUTES * 60:
        raise FacestreamError(f"Session {name!r} would last more than {MAX_SESSION_MINUTES // 1440} days.",
                              "Give a shorter duration, or leave it open and stop it.")
    if end is not None and end <= start:
        raise FacestreamError(f"Session {name!r} would end ({_when(end)}) before it starts ({_when(start)}).",
                              "Give an end after the start, or a positive --duration.")
    late_after_s = float(late_after_s)
    if not 0 <= late_after_s <= MAX_LATE_MINUTES * 60:  # also refuses NaN and infinity
        raise FacestreamError(f"Session {name!r} has a late delay of {late_after_s / 60:g} min.",
                              f"Give a late delay between 0 and {MAX_LATE_MINUTES} minutes.")
    if store.get_session(name) is not None:
        raise FacestreamError(f"An attendance session named {name!r} already exists.",
                              "Pick another name, or see it with `facestream attendance show NAME`.")
    if kind != "default" and not roster and not names:
        raise FacestreamError(f"Session {name!r} has no roster.",
                              "Choose who is expected: --roster group=cs101 (metadata) and/or --people 'A,B'.")
    entries = []
    selector = ", ".join(([roster] if roster else []) + names)
    if roster or names:
        entries = resolve_roster(people(), roster, names)
    elif kind == "default":
        everyone = list(people())
        if len(everyone) <= MAX_DEFAULT_ROSTER:
            entries = sorted((RosterEntry(p.id, p.name) for p in everyone), key=lambda r: r.name.lower())
            selector = "everyone enrolled"
    session = Session(name=name, cameras=cameras, roster=entries, selector=selector, start=start, end=end,
                      late_after_s=late_after_s, kind=kind, created=now)
    if kind != "default":
        for other in store.sessions():
            if other.kind != "default" and other.state(now) != "closed" and other.overlaps(session):
                shared = sorted(set(other.cameras) & set(cameras)) if other.cameras and cameras else None
                where = f"camera(s) {', '.join(shared)}" if shared else "the same cameras"
                raise FacestreamError(
                    f"Session {name!r} overlaps session {other.name!r} on {where} "
                    f"({_when(other.start)} to {_when(other.end)}).",
                    f"Stop it first (`facestream attendance stop '{other.name}'`), pick other --camera, "
                    "or other times.")
    if not store.add_session(session):
        raise FacestreamError(f"An attendance session named {name!r} already exists.", "Pick another name.")
    return session


def stop_session(store: AttendanceStore, name: str | None = None, now: float | None = None) -> Session:
    """End a session now (the latest active one when no name is given)."""
    now = time.time() if now is None else now
    if name is None:
        active = [s for s in store.sessions() if s.state(now) == "active" and s.kind != "default"]
        if not active:
            raise FacestreamError("No attendance session is running.", "List them with `facestream attendance list`.")
        session = max(active, key=lambda s: s.start)
    else:
        session = store.require_session(name)
    if session.state(now) == "closed":
        raise FacestreamError(f"Session {session.name!r} already ended at {_when(session.end)}.",
                              "Start a new one with `facestream attendance start`.")
    end = max(now, session.start + 1e-3)
    store.set_end(session.name, end)
    session.end = end
    return session


def day_bounds(now: float) -> tuple[str, float]:
    """The day's session name and the next local midnight."""
    today = datetime.fromtimestamp(now)
    midnight = datetime(today.year, today.month, today.day) + timedelta(days=1)
    return f"day {today:%Y-%m-%d}", midnight.timestamp()


def parse_time(text: str, now: float | None = None) -> float:
    """``HH:MM`` (today), ``YYYY-MM-DD HH:MM`` or ISO 8601, local time -> epoch seconds."""
    now = time.time() if now is None else now
    text = text.strip()
    try:
        if len(text) <= 5 and ":" in text:
            h, m = (int(x) for x in text.split(":"))
            base = datetime.fromtimestamp(now)
            return base.replace(hour=h, minute=m, second=0, microsecond=0).timestamp()
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise FacestreamError(f"Bad time {text!r}.", "Write HH:MM (today) or YYYY-MM-DD HH:MM.") from None


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``45m``, ``1.5h`` -> seconds."""
    text = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], None)
    try:
        value = float(text[:-1] if scale else text) * (scale or 60)
    except ValueError:
        value = -1
    if value <= 0:
        raise FacestreamError(f"Bad duration {text!r}.", "Write e.g. 45m, 1.5h or 90s (a bare number is minutes).")
    return value
