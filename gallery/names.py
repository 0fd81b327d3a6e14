"""Names that only look alike: ``Joe Biden`` and ``Joe Bіden`` (a Cyrillic і) are one name to a reader.

The skeleton of a name maps every character to one representative of its
class in Unicode's confusables table (TR39 ``confusables.txt``, as shipped by
PyPI ``confusable-homoglyphs``; single characters only: ``rn`` and ``m`` stay
apart), after NFKC, blind to case (so ``I`` and ``l`` are one, and rare real
pairs such as ``Ali``/``All`` count as look-alikes: the second must add an initial). Two people may not have
names with the same skeleton unless the names are the same (then they are the same person): every
path that creates or renames a person goes through the gallery store, which
checks it (CLI, roster, archive, API, demo).
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Iterable, Iterator
from importlib import resources
from typing import Any

from facestream.gallery.errors import GalleryError


@functools.lru_cache(maxsize=1)
def _representatives() -> dict[str, str]:
    """Character -> its confusable class's representative (the smallest member, so ASCII when there is one)."""
    table = json.loads(resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"))
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    for key, alikes in table.items():
        if len(key) != 1:
            continue
        for alike in alikes:
            c = alike["c"]
            if len(c) == 1:
                a, b = find(key), find(c)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {c: find(c) for c in parent}


def skeleton(name: str) -> str:
    """The form two look-alike names share (spaces collapsed, case folded)."""
    reps = _representatives()
    text = unicodedata.normalize("NFKC", name)
    # case-blind, like the names' uniqueness: a letter stands for both its cases' classes (O and 0, I and l)
    return " ".join("".join(min(reps.get(c.lower(), c.lower()), reps.get(c.upper(), c.upper())) for c in text)
                    .casefold().split())


class NameIndex:
    """The skeletons of the names enrolled so far, to refuse a new name that only looks like one of them."""

    def __init__(self, people: Iterable[tuple[str, str]] = ()):
        self._by_skeleton: dict[str, tuple[str, str]] = {}
        for person_id, name in people:
            self._by_skeleton.setdefault(skeleton(name), (person_id, name))

    def check(self, name: str, person_id: str | None = None) -> None:
        """Raise when another person's name looks the same as ``name`` (the same name, in any case, is the
        same person: enrolment adds to them).

        Raises:
            GalleryError: the look-alike, named, with the fix.
        """
        other = self._by_skeleton.get(skeleton(name))
        if other is None or other[0] == person_id or other[1].casefold() == name.casefold():
            return
        raise GalleryError(f"The name {name!r} looks the same as {other[1]!r}, someone already enrolled "
                           "(look-alike letters from another alphabet, or digits for letters).",
                           f"Type the name in plain letters; if this is {other[1]}, use that exact name.")

    def add(self, person_id: str, name: str) -> None:
        self.check(name, person_id)
        self._by_skeleton.setdefault(skeleton(name), (person_id, name))


def check_distinct(name: str, existing: Iterable[tuple[str, str]], person_id: str | None = None) -> None:
    """Refuse ``name`` when another person's name (``existing``: (id, name) pairs) looks the same."""
    NameIndex(existing).check(name, person_id)


def distinct_names(items: Iterable[tuple[Any, Any]], existing: Iterable[tuple[str, str]]
                   ) -> Iterator[tuple[Any, Any]]:
    """``items`` ((Person, embeddings) pairs, a bulk import) passed through, each name checked against the
    gallery's and the earlier items' (one index, built once)."""
    index = NameIndex(existing)
    for person, embeddings in items:
        index.add(person.id, person.name)
        yield person, embeddings
