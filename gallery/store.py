"""The store interface every backend implements, and :func:`open_store` that picks one by URL.

``sqlite:///path/gallery.db`` is the embedded default (one file, no server);
``redis://host:port/db`` is shared by many workers and machines and announces
every change over pub/sub. Both keep the same data model:

* a person: id, unique display name (case-insensitive), metadata, timestamps;
* embeddings keyed by ``(model_id, content hash)``: the vector, the face chip
  (JPEG) and where it came from. The content hash makes re-enrolment
  idempotent; the model id keeps vectors of different models apart;
* **negatives**: faces a user marked "not this person" for someone, kept per
  person and model (the matcher stops naming faces that look more like them than
  like the person); deleting the person deletes them too;
* **settings**: small JSON values that every worker must agree on, such as the
  operating point ``facestream calibrate`` chose for a model;
* a version counter bumped by every write, which the matcher compares to know
  when its in-memory matrix is stale.

Writes that belong together (a person and its embeddings, a delete and all its
traces) happen in one transaction, so a crash never leaves half a person.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facestream.gallery.errors import GalleryError
from facestream.gallery.types import EmbeddingInfo, NewEmbedding, Person

MAX_NAME = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class GalleryMatrix:
    """Everything the matcher needs for one model, loaded in one go.

    Attributes:
        version: the store version this snapshot belongs to.
        person_ids: one id per person that has at least one embedding of the model.
        names: display names, parallel to ``person_ids``.
        matrix: (N, D) float32 L2-normalised rows, grouped by person (rows of a person are contiguous).
        row_person: (N,) int32 index into ``person_ids`` for each row (non-decreasing).
        negatives: (M, D) float32 rows marked "not this person"; negative_person: (M,) their person's index.
        settings: the store's settings for this model (e.g. ``operating_point``), read in the same snapshot.
    """

    version: int
    person_ids: list[str]
    names: list[str]
    matrix: np.ndarray
    row_person: np.ndarray
    negatives: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    negative_person: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, version: int, rows: list[tuple[str, bytes]], names: dict[str, str],
              negative_rows: Iterable[tuple[str, bytes]] = (), settings: dict[str, Any] | None = None
              ) -> GalleryMatrix:
        """Group ``(person_id, float32 bytes)`` rows by person into one matrix; negatives of people without
        a positive row of this model are left out (there is nobody for them to veto)."""
        if not rows:
            return cls(version, [], [], np.zeros((0, 0), np.float32), np.zeros((0,), np.int32),
                       settings=settings or {})
        index: dict[str, int] = {}
        rp = np.fromiter((index.setdefault(pid, len(index)) for pid, _ in rows), np.int32, len(rows))
        order = np.argsort(rp, kind="stable")  # group each person's rows together, in first-seen order
        matrix = np.frombuffer(b"".join([r[1] for r in rows]), dtype=np.float32).reshape(len(rows), -1)
        if np.any(np.diff(order) != 1):
            matrix, rp = matrix[order], rp[order]
        person_ids = list(index)
        neg = [(index[pid], blob) for pid, blob in negative_rows if pid in index]
        negatives = (np.frombuffer(b"".join(b for _, b in neg), np.float32).reshape(len(neg), -1) if neg
                     else np.zeros((0, matrix.shape[1]), np.float32))
        negative_person = np.array([i for i, _ in neg], np.int32)
        return cls(version, person_ids, [names.get(p, p) for p in person_ids], matrix, rp, negatives,
                   negative_person, settings or {})


    def with_person(self, version: int, person_id: str, name: str, rows: list[bytes], negatives: list[bytes]
                    ) -> GalleryMatrix:
        """This snapshot with one person's rows and negatives replaced (no rows: the person leaves it), as of
        ``version``: what a change to one person does, without reading everyone again."""
        old = self.person_ids.index(person_id) if person_id in self.person_ids else -1
        ids = [p for p in self.person_ids if p != person_id]
        names = [n for p, n in zip(self.person_ids, self.names, strict=True) if p != person_id]
        remap = np.arange(len(self.person_ids), dtype=np.int32)
        if old >= 0:
            remap[old + 1:] -= 1  # the people after the one removed move up by one
        keep, keep_neg = self.row_person != old, self.negative_person != old
        matrix, row_person = self.matrix[keep], remap[self.row_person[keep]]
        negs, neg_person = self.negatives[keep_neg], remap[self.negative_person[keep_neg]]
        if rows:
            new = len(ids)
            ids.append(person_id)
            names.append(name)
            block = np.frombuffer(b"".join(rows), np.float32).reshape(len(rows), -1)
            matrix = np.concatenate([matrix, block]) if len(matrix) else block
            row_person = np.concatenate([row_person, np.full(len(rows), new, np.int32)])
            if negatives:
                nblock = np.frombuffer(b"".join(negatives), np.float32).reshape(len(negatives), -1)
                negs = np.concatenate([negs, nblock]) if len(negs) else nblock
                neg_person = np.concatenate([neg_person, np.full(len(negatives), new, np.int32)])
        if not ids:
            return GalleryMatrix.build(version, [], {}, (), self.settings)
        if not len(negs):
            negs = np.zeros((0, matrix.shape[1]), np.float32)
        return GalleryMatrix(version, ids, names, matrix, row_person.astype(np.int32), negs,
                             neg_person.astype(np.int32), dict(self.settings))


@dataclass(frozen=True)
class PersonRows:
    """One person's rows of one model, read at one store version (a change applied as a delta)."""

    version: int
    name: str
    rows: list[bytes]
    negatives: list[bytes]


class Subscription:
    """A running change listener; :meth:`close` stops it."""

    def close(self) -> None:  # pragma: no cover - trivial default
        pass


def new_person_id() -> str:
    return uuid.uuid4().hex[:12]


_PERSON_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_person_id(pid: object) -> str:
    """A person id as every store keeps it: 1-64 letters, digits, ``.``, ``_`` or ``-`` (ids come from rosters
    and archives; a ``|`` or ``:`` could be read back as part of a Redis key)."""
    if not isinstance(pid, str) or not _PERSON_ID.fullmatch(pid):
        raise GalleryError(f"Person id {str(pid)[:40]!r} is not valid.",
                           "Use 1-64 letters, digits, '.', '_' or '-' (or leave the id out to get a new one).")
    return pid


# Characters that print as nothing or move text (zero-width spaces and joiners, bidi controls, the BOM,
# soft hyphens, tags: Unicode's "format" category) or belong to nobody (private use, unassigned): a name
# holding one can show as somebody else's ("Joe Biden" + U+200B renders as "Joe Biden").
_INVISIBLE = ("Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp")


def check_name(name: object) -> str:
    """A display name as stored: NFKC-normalised (full-width and compatibility forms folded), spaces
    collapsed, non-empty, free of control and invisible characters, not absurdly long."""
    if not isinstance(name, str) or not name.strip():
        raise GalleryError("A person needs a non-empty name.", "Pass --name NAME or fill the roster's name column.")
    name = unicodedata.normalize("NFKC", name)
    hidden = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in _INVISIBLE or
                     (c.isspace() and c != " ")})
    if hidden or _CONTROL.search(name):
        raise GalleryError(f"Name {name.strip()[:40]!r} holds invisible or control characters ({', '.join(hidden)}).",
                           "Type the name with visible letters and plain spaces only.")
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME:
        raise GalleryError(f"Name {name[:40]!r}... is empty or too long.",
                           f"Use a printable name of at most {MAX_NAME} characters.")
    return name


def check_vector(e: NewEmbedding, dim: int | None) -> np.ndarray:
    """The vector as contiguous float32, refusing NaNs, zeros and dimension changes within a model."""
    v = np.ascontiguousarray(np.asarray(e.vector, dtype=np.float32).reshape(-1))
    if not np.all(np.isfinite(v)) or not np.any(v):
        raise GalleryError(f"Embedding from {e.source or e.hash} is empty or not finite.", "Re-embed the photo.")
    if dim is not None and len(v) != dim:
        raise GalleryError(
            f"Embedding from {e.source or e.hash} has {len(v)} dimensions, but model {e.model_id} "
            f"has {dim} in this gallery.", "Use the same model for every embedding of a model id.")
    n = float(np.linalg.norm(v))
    return v if abs(n - 1.0) < 1e-3 else v / n


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Metadata as stored: a JSON object of short keys and plain finite values (rosters and archives feed it)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise GalleryError(f"Metadata must be key/value pairs, not {type(metadata).__name__}.",
                           "Pass metadata as KEY=VALUE pairs (or a JSON object).")
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key.strip() or len(key) > 100:
            raise GalleryError(f"Metadata key {str(key)[:40]!r} is not valid.", "Use short text keys.")
        items = value if isinstance(value, list) and len(value) <= 100 else [value]
        for item in items:  # a value, or a short list of values (tags=[cast, writer])
            if isinstance(item, float) and not math.isfinite(item):
                raise GalleryError(f"Metadata {key!r} is {item}, not a number a reader can parse.",
                                   "Use a finite value.")
            if not isinstance(item, str | int | float | bool | type(None)):
                raise GalleryError(f"Metadata {key!r} holds a {type(item).__name__}; only text, numbers, yes/no "
                                   "values and short lists of them are kept.", "Flatten it to text.")
            if isinstance(item, str) and len(item) > 2000:
                raise GalleryError(f"Metadata {key!r} is {len(item)} characters long.", "Keep values under 2000.")
        out[key] = value
    return out


def setting_key(name: str, model_id: str) -> str:
    """The settings key of a per-model setting (``operating_point:<model_id>``)."""
    return f"{name}:{model_id}"


def unknown_person(ref: str, names: Iterable[str]) -> GalleryError:
    close = difflib.get_close_matches(ref, list(names), n=3, cutoff=0.6)
    hint = f"Did you mean {', '.join(repr(c) for c in close)}?" if close else "See `facestream people list`."
    return GalleryError(f"No person {ref!r} in the gallery.", hint)


class GalleryStore(ABC):
    """Where people and embeddings live. See the module docstring for the data model."""

    url: str

    # -- versions and change notification -------------------------------------------------------
    @abstractmethod
    def version(self) -> int:
        """The change counter; any write bumps it."""

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Subscription | None:
        """Call ``callback(event)`` on every change made by any process; None if the store cannot push.

        Without a push channel (SQLite) the matcher compares :meth:`version` before each search.
        """
        return None

    # -- people -------------------------------------------------------------------------------
    @abstractmethod
    def find_person(self, ref: str) -> Person | None:
        """The person whose id is ``ref``, else whose name equals it ignoring case."""

    def get_person(self, ref: str) -> Person:
        """Like :meth:`find_person` but an unknown person is a :class:`GalleryError` with suggestions."""
        p = self.find_person(ref)
        if p is None:
            raise unknown_person(ref, [q.name for q in self.list_people()])
        return p

    @abstractmethod
    def list_people(self) -> list[Person]:
        """Everyone, sorted by name, with embedding counts."""

    @abstractmethod
    def enroll(self, name: str, embeddings: list[NewEmbedding], metadata: dict[str, Any] | None = None,
               person_id: str | None = None) -> tuple[Person, int]:
        """Create the person if new (or update its metadata) and add embeddings, all in one transaction.

        Embeddings whose ``(model_id, hash)`` is already stored are skipped; those marked
        ``negative`` are stored as the person's negatives. Returns the person and how many
        embeddings (negatives included) were added.
        """

    def add_person(self, name: str, metadata: dict[str, Any] | None = None, person_id: str | None = None
                   ) -> Person:
        return self.enroll(name, [], metadata, person_id)[0]

    @abstractmethod
    def rename_person(self, ref: str, new_name: str) -> Person:
        """Change the display name (must stay unique)."""

    @abstractmethod
    def set_metadata(self, ref: str, metadata: dict[str, Any], replace: bool = False) -> Person:
        """Merge (or with ``replace`` set) the person's metadata."""

    @abstractmethod
    def delete_person(self, ref: str) -> Person:
        """Remove the person and every trace: embeddings, chips, index entries; announce it."""

    # -- embeddings ---------------------------------------------------------------------------
    @abstractmethod
    def owner_of(self, model_id: str, hash: str) -> str | None:
        """Person id that already has this content hash for this model (duplicate check)."""

    @abstractmethod
    def embeddings_of(self, ref: str) -> list[EmbeddingInfo]:
        """The embeddings stored for a person (no vectors)."""

    @abstractmethod
    def remove_embedding(self, ref: str, model_id: str, hash: str) -> bool:
        """Remove one of a person's embeddings (and its chip); False when they have no such embedding."""

    # -- negatives ----------------------------------------------------------------------------
    @abstractmethod
    def add_negative(self, ref: str, embedding: NewEmbedding) -> tuple[Person, bool]:
        """Keep a face as "not this person" for ``ref``; returns the person and whether it was new."""

    @abstractmethod
    def remove_negative(self, ref: str, model_id: str, hash: str) -> bool:
        """Forget one negative (undo); False when the person has no such negative."""

    @abstractmethod
    def negatives_of(self, ref: str) -> list[EmbeddingInfo]:
        """The negatives stored for a person (no vectors)."""

    # -- settings -----------------------------------------------------------------------------
    @abstractmethod
    def get_setting(self, key: str) -> dict[str, Any] | None:
        """A stored setting (JSON object), or None."""

    @abstractmethod
    def set_setting(self, key: str, value: dict[str, Any] | None) -> None:
        """Store (or with None remove) a setting; bumps the version so every matcher reloads."""

    @abstractmethod
    def model_counts(self) -> dict[str, int]:
        """Number of embeddings per model id."""

    def person_rows(self, model_id: str, person_id: str) -> PersonRows | None:
        """One person's rows and negatives of ``model_id`` with the version they were read at, read
        atomically; None where a store cannot (the matcher then reloads everything)."""
        return None

    @abstractmethod
    def load_matrix(self, model_id: str) -> GalleryMatrix:
        """Every embedding of ``model_id`` as one matrix grouped by person, with the negatives and the
        settings of that model (``operating_point``), all from one snapshot."""

    @abstractmethod
    def iter_chips(self, model_id: str) -> Iterator[tuple[str, str, str, bytes]]:
        """``(person_id, hash, source, chip JPEG)`` for every stored chip of a model (for re-embedding)."""

    @abstractmethod
    def delete_model(self, model_id: str) -> int:
        """Drop every embedding of a model (after re-embedding); returns how many."""

    @abstractmethod
    def export_people(self) -> Iterator[tuple[Person, list[NewEmbedding]]]:
        """Every person with all its embeddings (vectors and chips included), negatives marked ``negative``."""

    def import_people(self, items: Iterable[tuple[Person, list[NewEmbedding]]], batch: int = 1000) -> int:
        """Bulk insert people with their embeddings (used by archive import and benchmarks).

        People matched by id or name gain the new embeddings; each person is one transaction.
        Backends override this with faster batched writes. Returns the number of people written.
        """
        n = 0
        for person, embs in items:
            self.enroll(person.name, embs, person.metadata, person.id)
            n += 1
        return n

    @abstractmethod
    def clear(self) -> None:
        """Remove everything (tests, benchmarks)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold a connection to release
        """Release connections."""

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
