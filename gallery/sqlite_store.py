"""The embedded store: one SQLite file, no server (the default).

WAL mode lets one writer and many readers (other processes too) work at once;
every write runs in one transaction that also bumps ``meta.version``, which
matchers in any process compare before a search. ``secure_delete`` overwrites
deleted rows, so deleting a person leaves no face data behind in free pages.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from facestream.gallery.errors import GalleryError
from facestream.gallery.names import check_distinct, distinct_names
from facestream.gallery.store import (
    GalleryMatrix,
    GalleryStore,
    check_metadata,
    check_name,
    check_person_id,
    check_vector,
    new_person_id,
    setting_key,
    unknown_person,
)
from facestream.gallery.types import EmbeddingInfo, NewEmbedding, Person

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people(
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    metadata TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings(
    model_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    UNIQUE(model_id, hash));
CREATE INDEX IF NOT EXISTS embeddings_person ON embeddings(person_id);
CREATE TABLE IF NOT EXISTS chips(
    model_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    jpeg BLOB NOT NULL,
    PRIMARY KEY(model_id, hash),
    FOREIGN KEY(model_id, hash) REFERENCES embeddings(model_id, hash) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS negatives(
    person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    chip BLOB,
    source TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    PRIMARY KEY(person_id, model_id, hash));
CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('version', '0'), ('schema', '2');
"""


def sqlite_path(url: str) -> str:
    """File path of ``sqlite:///abs/path.db``, ``sqlite:///~/x.db``, ``sqlite://rel.db`` or a bare path."""
    rest = url[len("sqlite://"):] if url.startswith("sqlite://") else url
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    if rest.startswith(("/~", "/$", "/./", "/../")):
        rest = rest[1:]
    return str(Path(os.path.expandvars(rest)).expanduser())


class SqliteStore(GalleryStore):
    """A gallery in one SQLite file. Thread-safe (one connection behind a lock)."""

    def __init__(self, url: str):
        self.url = url
        self.path = sqlite_path(url)
        if self.path != ":memory:":
            parent = Path(self.path).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise GalleryError(f"Cannot create the gallery folder {parent} ({exc}).",
                                   "Pass --gallery sqlite:///a/writable/path.db.") from None
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"Cannot open the gallery {self.path} ({exc}).",
                               "Check that the file is a facestream gallery and the folder is writable.") from None

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that bumps the version; rolled back whole on any error."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise GalleryError(f"The gallery {self.path} is busy or read-only ({exc}).",
                                   "Retry, or check file permissions.") from None
            try:
                yield db
                db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def version(self) -> int:
        return int(self._q("SELECT value FROM meta WHERE key = 'version'")[0][0])

    # -- people -------------------------------------------------------------------------------
    def _person(self, row: tuple) -> Person:
        pid, name, meta, created, updated, n = row
        return Person(pid, name, json.loads(meta), int(n), created, updated)

    _SELECT = ("SELECT p.id, p.name, p.metadata, p.created, p.updated, "
               "(SELECT COUNT(*) FROM embeddings e WHERE e.person_id = p.id) FROM people p ")

    def find_person(self, ref: str) -> Person | None:
        rows = self._q(self._SELECT + "WHERE p.id = ?", (ref,)) or self._q(
            self._SELECT + "WHERE p.name = ? COLLATE NOCASE", (str(ref).strip(),))
        return self._person(rows[0]) if rows else None

    def list_people(self) -> list[Person]:
        return [self._person(r) for r in self._q(self._SELECT + "ORDER BY p.name COLLATE NOCASE")]

    def _resolve(self, db: sqlite3.Connection, name: str, person_id: str | None,
                 metadata: dict[str, Any] | None, now: float) -> str:
        """Person id for an enrolment: existing by id, existing by name, or newly created."""
        name = check_name(name)
        metadata = check_metadata(metadata)
        if person_id:
            check_person_id(person_id)
        row = db.execute("SELECT id, name, metadata FROM people WHERE id = ?", (person_id,)).fetchone() \
            if person_id else None
        if row is None:
            row = db.execute("SELECT id, name, metadata FROM people WHERE name = ? COLLATE NOCASE",
                             (name,)).fetchone()
            if row is not None and person_id and row[0] != person_id:
                raise GalleryError(f"The name {name!r} already belongs to person {row[0]}.",
                                   "Use a distinct display name, e.g. add a middle initial.")
        if row is None:
            check_distinct(name, db.execute("SELECT id, name FROM people"))
            pid = person_id or new_person_id()
            db.execute("INSERT INTO people(id, name, metadata, created, updated) VALUES (?, ?, ?, ?, ?)",
                       (pid, name, json.dumps(allow_nan=False, obj=metadata or {}), now, now))
            return pid
        if metadata:
            merged = {**json.loads(row[2]), **metadata}
            db.execute("UPDATE people SET metadata = ?, updated = ? WHERE id = ?",
                       (json.dumps(allow_nan=False, obj=merged), now, row[0]))
        return row[0]

    def _dim(self, db: sqlite3.Connection, model_id: str) -> int | None:
        row = db.execute("SELECT length(vector) FROM embeddings WHERE model_id = ? LIMIT 1", (model_id,)).fetchone()
        return row[0] // 4 if row else None

    def _add(self, db: sqlite3.Connection, pid: str, embeddings: list[NewEmbedding], now: float) -> int:
        added = 0
        dims: dict[str, int | None] = {}
        for e in embeddings:
            if e.model_id not in dims:
                dims[e.model_id] = self._dim(db, e.model_id)
            v = check_vector(e, dims[e.model_id])
            dims[e.model_id] = len(v)
            if e.negative:
                cur = db.execute(
                    "INSERT OR IGNORE INTO negatives(person_id, model_id, hash, vector, chip, source, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", (pid, e.model_id, e.hash, v.tobytes(), e.chip, e.source,
                                                     e.created or now))
                added += cur.rowcount
                continue
            cur = db.execute(
                "INSERT OR IGNORE INTO embeddings(model_id, hash, person_id, vector, source, created) "
                "VALUES (?, ?, ?, ?, ?, ?)", (e.model_id, e.hash, pid, v.tobytes(), e.source, e.created or now))
            if cur.rowcount:
                added += 1
                if e.chip:
                    db.execute("INSERT OR REPLACE INTO chips(model_id, hash, jpeg) VALUES (?, ?, ?)",
                               (e.model_id, e.hash, e.chip))
        if added:
            db.execute("UPDATE people SET updated = ? WHERE id = ?", (now, pid))
        return added

    def enroll(self, name: str, embeddings: list[NewEmbedding], metadata: dict[str, Any] | None = None,
               person_id: str | None = None) -> tuple[Person, int]:
        now = time.time()
        try:
            with self._tx() as db:
                pid = self._resolve(db, name, person_id, metadata, now)
                added = self._add(db, pid, embeddings, now)
        except sqlite3.IntegrityError as exc:
            raise GalleryError(f"Cannot enrol {name!r}: {exc}.", "Use a unique name and person id.") from None
        person = self.find_person(pid)
        assert person is not None
        return person, added

    def import_people(self, items: Iterable[tuple[Person, list[NewEmbedding]]], batch: int = 1000) -> int:
        """Bulk import: ``batch`` people per transaction (each person still whole or absent)."""
        items = distinct_names(items, self._q("SELECT id, name FROM people"))
        n = 0
        chunk: list[tuple[Person, list[NewEmbedding]]] = []

        def flush() -> None:
            now = time.time()
            with self._tx() as db:
                ids = [p.id for p, _ in chunk]
                names = [p.name.strip() for p, _ in chunk]
                marks = ",".join("?" * len(chunk))
                clash = db.execute(f"SELECT 1 FROM people WHERE id IN ({marks}) OR name COLLATE NOCASE IN ({marks}) "
                                   "LIMIT 1", (*ids, *names)).fetchone()
                negative = any(e.negative for _, embs in chunk for e in embs)
                if clash or negative or not all(ids) or len({n.casefold() for n in names}) < len(names):
                    for person, embs in chunk:  # merging into existing people: one by one
                        pid = self._resolve(db, person.name, person.id, person.metadata, person.created or now)
                        self._add(db, pid, embs, now)
                else:  # all new: a few executemany calls for the whole chunk
                    db.executemany("INSERT INTO people(id, name, metadata, created, updated) VALUES (?, ?, ?, ?, ?)",
                                   [(check_person_id(p.id), check_name(p.name),
                                     json.dumps(allow_nan=False, obj=check_metadata(p.metadata)), p.created or now,
                                     p.updated or now) for p, _ in chunk])
                    dims: dict[str, int | None] = {}
                    rows, chips = [], []
                    for person, embs in chunk:
                        for e in embs:
                            if e.model_id not in dims:
                                dims[e.model_id] = self._dim(db, e.model_id)
                            v = check_vector(e, dims[e.model_id])
                            dims[e.model_id] = len(v)
                            rows.append((e.model_id, e.hash, person.id, v.tobytes(), e.source, e.created or now))
                            if e.chip:
                                chips.append((e.model_id, e.hash, e.chip))
                    db.executemany("INSERT OR IGNORE INTO embeddings(model_id, hash, person_id, vector, source, "
                                   "created) VALUES (?, ?, ?, ?, ?, ?)", rows)
                    db.executemany("INSERT OR REPLACE INTO chips(model_id, hash, jpeg) VALUES (?, ?, ?)", chips)
            chunk.clear()

        for item in items:
            chunk.append(item)
            n += 1
            if len(chunk) >= batch:
                flush()
        if chunk:
            flush()
        return n

    def _ref(self, db: sqlite3.Connection, ref: str) -> tuple[str, str]:
        row = db.execute("SELECT id, name FROM people WHERE id = ?", (ref,)).fetchone() or db.execute(
            "SELECT id, name FROM people WHERE name = ? COLLATE NOCASE", (str(ref).strip(),)).fetchone()
        if row is None:
            raise unknown_person(ref, [r[0] for r in db.execute("SELECT name FROM people")])
        return row[0], row[1]

    def rename_person(self, ref: str, new_name: str) -> Person:
        new_name = check_name(new_name)
        try:
            with self._tx() as db:
                pid, _ = self._ref(db, ref)
                check_distinct(new_name, db.execute("SELECT id, name FROM people"), pid)
                db.execute("UPDATE people SET name = ?, updated = ? WHERE id = ?", (new_name, time.time(), pid))
        except sqlite3.IntegrityError:
            raise GalleryError(f"The name {new_name!r} is already taken.", "Choose a distinct name.") from None
        return self.get_person(pid)

    def set_metadata(self, ref: str, metadata: dict[str, Any], replace: bool = False) -> Person:
        metadata = check_metadata(metadata)
        with self._tx() as db:
            pid, _ = self._ref(db, ref)
            old = {} if replace else json.loads(db.execute("SELECT metadata FROM people WHERE id = ?",
                                                           (pid,)).fetchone()[0])
            db.execute("UPDATE people SET metadata = ?, updated = ? WHERE id = ?",
                       (json.dumps(allow_nan=False, obj={**old, **metadata}), time.time(), pid))
        return self.get_person(pid)

    def delete_person(self, ref: str) -> Person:
        with self._tx() as db:
            pid, _ = self._ref(db, ref)
            person = self.find_person(pid)
            # ON DELETE CASCADE (foreign_keys=ON) removes the embeddings, the negatives and, per (model, hash),
            # the chips.
            db.execute("DELETE FROM people WHERE id = ?", (pid,))
        with self._lock:  # secure_delete overwrote the rows; the write-ahead log must not keep them either
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert person is not None
        return person

    # -- embeddings ---------------------------------------------------------------------------
    def owner_of(self, model_id: str, hash: str) -> str | None:
        rows = self._q("SELECT person_id FROM embeddings WHERE model_id = ? AND hash = ?", (model_id, hash))
        return rows[0][0] if rows else None

    def embeddings_of(self, ref: str) -> list[EmbeddingInfo]:
        pid = self.get_person(ref).id
        rows = self._q(
            "SELECT e.hash, e.model_id, e.source, e.created, c.hash IS NOT NULL FROM embeddings e "
            "LEFT JOIN chips c ON c.model_id = e.model_id AND c.hash = e.hash WHERE e.person_id = ? "
            "ORDER BY e.created", (pid,))
        return [EmbeddingInfo(h, m, s, c, bool(k)) for h, m, s, c, k in rows]

    def remove_embedding(self, ref: str, model_id: str, hash: str) -> bool:
        with self._tx() as db:
            pid, _ = self._ref(db, ref)
            return db.execute("DELETE FROM embeddings WHERE person_id = ? AND model_id = ? AND hash = ?",
                              (pid, model_id, hash)).rowcount > 0

    # -- negatives ----------------------------------------------------------------------------
    def add_negative(self, ref: str, embedding: NewEmbedding) -> tuple[Person, bool]:
        with self._tx() as db:
            pid, _ = self._ref(db, ref)
            added = self._add(db, pid, [replace(embedding, negative=True)], time.time())
        return self.get_person(pid), bool(added)

    def remove_negative(self, ref: str, model_id: str, hash: str) -> bool:
        with self._tx() as db:
            pid, _ = self._ref(db, ref)
            return db.execute("DELETE FROM negatives WHERE person_id = ? AND model_id = ? AND hash = ?",
                              (pid, model_id, hash)).rowcount > 0

    def negatives_of(self, ref: str) -> list[EmbeddingInfo]:
        pid = self.get_person(ref).id
        rows = self._q("SELECT hash, model_id, source, created, chip IS NOT NULL FROM negatives WHERE person_id = ? "
                       "ORDER BY created", (pid,))
        return [EmbeddingInfo(h, m, s, c, bool(k)) for h, m, s, c, k in rows]

    # -- settings -----------------------------------------------------------------------------
    def get_setting(self, key: str) -> dict[str, Any] | None:
        rows = self._q("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def set_setting(self, key: str, value: dict[str, Any] | None) -> None:
        with self._tx() as db:
            if value is None:
                db.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)",
                           (key, json.dumps(allow_nan=False, obj=value)))

    def model_counts(self) -> dict[str, int]:
        return dict(self._q("SELECT model_id, COUNT(*) FROM embeddings GROUP BY model_id"))

    def load_matrix(self, model_id: str) -> GalleryMatrix:
        with self._lock:
            db = self._db
            db.execute("BEGIN")  # one snapshot: version, rows, negatives and settings agree
            try:
                version = int(db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])
                rows = db.execute("SELECT person_id, vector FROM embeddings WHERE model_id = ?",
                                  (model_id,)).fetchall()
                negatives = db.execute("SELECT person_id, vector FROM negatives WHERE model_id = ?",
                                       (model_id,)).fetchall()
                names = dict(db.execute("SELECT id, name FROM people").fetchall())
                op = db.execute("SELECT value FROM settings WHERE key = ?",
                                (setting_key("operating_point", model_id),)).fetchone()
            finally:
                db.execute("COMMIT")
        settings = {"operating_point": json.loads(op[0])} if op else {}
        return GalleryMatrix.build(version, rows, names, negatives, settings)

    def iter_chips(self, model_id: str) -> Iterator[tuple[str, str, str, bytes]]:
        rows = self._q("SELECT e.person_id, e.hash, e.source, c.jpeg FROM chips c JOIN embeddings e "
                       "ON c.model_id = e.model_id AND c.hash = e.hash WHERE c.model_id = ?", (model_id,))
        yield from rows

    def delete_model(self, model_id: str) -> int:
        with self._tx() as db:
            db.execute("DELETE FROM negatives WHERE model_id = ?", (model_id,))
            # the chips go by ON DELETE CASCADE; rowcount counts the embeddings only
            return db.execute("DELETE FROM embeddings WHERE model_id = ?", (model_id,)).rowcount

    def export_people(self) -> Iterator[tuple[Person, list[NewEmbedding]]]:
        import numpy as np

        for person in self.list_people():
            rows = self._q(
                "SELECT e.model_id, e.hash, e.vector, c.jpeg, e.source, e.created FROM embeddings e LEFT JOIN chips c "
                "ON c.model_id = e.model_id AND c.hash = e.hash WHERE e.person_id = ? ORDER BY e.created",
                (person.id,))
            negatives = self._q("SELECT model_id, hash, vector, chip, source, created FROM negatives "
                                "WHERE person_id = ? ORDER BY created", (person.id,))
            yield person, ([NewEmbedding(np.frombuffer(v, np.float32), m, h, c, s, t) for m, h, v, c, s, t in rows]
                           + [NewEmbedding(np.frombuffer(v, np.float32), m, h, c, s, t, negative=True)
                              for m, h, v, c, s, t in negatives])

    def clear(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM chips")
            db.execute("DELETE FROM negatives")
            db.execute("DELETE FROM settings")
            db.execute("DELETE FROM embeddings")
            db.execute("DELETE FROM people")

    def close(self) -> None:
        with self._lock:
            self._db.close()
