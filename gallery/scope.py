"""Who a camera, a session or a run may name: a roster, a group from metadata, a watch list.

A class of 30 inside a school of 1,000 should be judged as a gallery of 30: the
open-set decision's chance that a stranger passes somebody grows with the number
of people searched (:mod:`facestream.gallery.decision`), so searching only the
people who may be there names more of them at the same promise on strangers.
Someone enrolled but outside the scope is ``unknown`` for that camera, or, with
``outside="gallery"``, named by the whole gallery's (stricter) rule and marked
"not on roster".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from facestream.gallery.errors import GalleryError
from facestream.gallery.store import GalleryStore

log = logging.getLogger(__name__)

OUTSIDE = ("unknown", "gallery")


@dataclass(frozen=True)
class Scope:
    """The people who may be named, by name or id and by metadata group (``group=B2``).

    Attributes:
        people: names or ids.
        groups: values of the people's ``group`` metadata.
        outside: ``unknown`` (people outside are never named here) or ``gallery`` (named only when the
            whole gallery's rule names them, and marked as outside).
    """

    people: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    outside: str = "unknown"

    def __post_init__(self) -> None:
        if self.outside not in OUTSIDE:
            raise GalleryError(f"Unknown scope rule for people outside: {self.outside!r}.",
                               f"Use one of: {', '.join(OUTSIDE)}.")

    @property
    def everyone(self) -> bool:
        return not self.people and not self.groups

    def describe(self) -> str:
        parts = [f"{len(self.people)} named people"] if self.people else []
        parts += [f"group {g}" for g in self.groups]
        return "everyone" if self.everyone else " + ".join(parts)

    def resolve(self, store: GalleryStore) -> frozenset[str] | None:
        """The person ids in scope (None = everyone). Names nobody has are logged, not fatal: a roster may
        list someone who enrols later."""
        if self.everyone:
            return None
        ids: set[str] = set()
        for ref in self.people:
            person = store.find_person(ref)
            if person is None:
                log.warning("scope: nobody enrolled as %r (yet)", ref)
            else:
                ids.add(person.id)
        if self.groups:
            wanted = set(self.groups)
            ids.update(p.id for p in store.list_people() if str(p.metadata.get("group", "")) in wanted)
        return frozenset(ids)
