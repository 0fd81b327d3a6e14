"""Who is expected: a roster chosen from the gallery by metadata (``group=cs101``) or by name.

The roster is frozen into the session when it is created, so a person enrolled
or re-labelled later does not silently change an old report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from facestream.errors import FacestreamError
from facestream.gallery import open_store
from facestream.stream.attendance.model import RosterEntry


class PersonLike(Protocol):
    id: str
    name: str
    metadata: dict[str, Any]


def _values(meta: dict[str, Any], key: str) -> set[str]:
    """Every value a metadata field holds: scalars, lists, or comma-separated strings."""
    out: set[str] = set()
    for k in (key, key + "s") if not key.endswith("s") else (key, key[:-1]):
        v = meta.get(k)
        if v is None:
            continue
        items = v if isinstance(v, list | tuple | set) else str(v).split(",")
        out |= {str(x).strip().lower() for x in items if str(x).strip()}
    return out


def parse_selector(selector: str) -> tuple[str, str]:
    key, sep, value = selector.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise FacestreamError(f"Bad roster selector {selector!r}.",
                              "Write it as KEY=VALUE over people's metadata, e.g. group=cs101 or tag=staff.")
    return key.strip(), value.strip()


def resolve_roster(people: Iterable[PersonLike], selector: str | None = None,
                   names: list[str] | None = None) -> list[RosterEntry]:
    """The roster: everyone whose metadata matches ``selector``, plus everyone in ``names``.

    Raises:
        FacestreamError: a named person is not enrolled (or is ambiguous), or the
            selector matches nobody -- a roster of nobody is always a mistake.
    """
    people = list(people)
    chosen: dict[str, RosterEntry] = {}
    if selector:
        key, value = parse_selector(selector)
        for p in people:
            if value.lower() in _values(p.metadata or {}, key):
                chosen[p.id] = RosterEntry(p.id, p.name)
        if not chosen:
            raise FacestreamError(f"No enrolled person has {key}={value} in their metadata.",
                                  f"Enrol people with --meta {key}={value}, or check `facestream people list`.")
    missing = []
    for wanted in names or []:
        wanted = wanted.strip()
        if not wanted:
            continue
        hits = [p for p in people if p.id == wanted] or [p for p in people if p.name.lower() == wanted.lower()]
        if not hits:
            missing.append(wanted)
        elif len(hits) > 1:
            raise FacestreamError(f"{len(hits)} enrolled people are named {wanted!r}.",
                                  f"Name them by id instead: {', '.join(p.id for p in hits)}.")
        else:
            chosen[hits[0].id] = RosterEntry(hits[0].id, hits[0].name)
    if missing:
        raise FacestreamError(f"The roster names people who are not enrolled: {', '.join(missing)}.",
                              "Enrol them first (`facestream enroll`) or fix the names (`facestream people list`).")
    return sorted(chosen.values(), key=lambda r: r.name.lower())


def gallery_people(url: str) -> Callable[[], Sequence[PersonLike]]:
    """A callable listing the enrolled people of the gallery at ``url`` (opened per call; a bad store is a
    :class:`~facestream.gallery.errors.GalleryError`, which the CLI and servers show like any FacestreamError)."""

    def people() -> Sequence[PersonLike]:
        with open_store(url) as gallery:
            return gallery.list_people()

    return people
