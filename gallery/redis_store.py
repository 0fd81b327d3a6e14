"""The shared store: Redis, for many workers on many machines.

Key layout (prefix ``facestream:``)::

    version               INCR on every write
    people                hash  person_id -> JSON {name, metadata, created, updated}
    display               hash  person_id -> display name (fast bulk load for the matcher)
    names                 hash  casefolded name -> person_id (unique names)
    dims                  hash  model_id -> embedding dimension
    vec:<model>           hash  "<person_id>|<hash>" -> float32 bytes
    owner:<model>         hash  hash -> person_id (idempotent enrolment)
    info:<model>          hash  hash -> JSON {source, created}
    chip:<model>          hash  hash -> JPEG bytes of the aligned face chip
    pemb:<person_id>      set   "<model>|<hash>" (everything to remove on delete)
    neg:<model>           hash  "<person_id>|<hash>" -> float32 bytes of a "not this person" face
    neginfo:<model>       hash  "<person_id>|<hash>" -> JSON {source, created}
    negchip:<model>       hash  "<person_id>|<hash>" -> JPEG bytes
    pneg:<person_id>      set   "<model>|<hash>" (the person's negatives)
    settings              hash  key -> JSON (e.g. operating_point:<model>)
    events                pub/sub channel: JSON {op, person, time}

Every change is one MULTI/EXEC transaction (with WATCH where it reads first)
that also bumps ``version`` and PUBLISHes an event, so either all of a person is
written and announced or none of it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from facestream.gallery.errors import GalleryError
from facestream.gallery.names import check_distinct, distinct_names
from facestream.gallery.redis_bulk import split_known, stage_new_people
from facestream.gallery.redis_events import RedisSubscription
from facestream.gallery.redis_guard import guard as _guard
from facestream.gallery.store import (
    GalleryMatrix,
    GalleryStore,
    PersonRows,
    Subscription,
    check_metadata,
    check_name,
    check_person_id,
    check_vector,
    new_person_id,
    setting_key,
    unknown_person,
)
from facestream.gallery.types import EmbeddingInfo, NewEmbedding, Person
from facestream.redis_url import connect, connection_fix

log = logging.getLogger(__name__)

PREFIX = "facestream:"


def _text(value: bytes | str) -> str:
    """A Redis reply as text (the client returns bytes: vectors and chips are binary)."""
    return value.decode() if isinstance(value, bytes) else value


# KEYS: version, events channel; ARGV: op, person ("" for none), time -> the new version
_BUMP = """
local v = redis.call('INCR', KEYS[1])
local event = {op = ARGV[1], time = tonumber(ARGV[3]), version = v}
if ARGV[2] ~= '' then event.person = ARGV[2] end
redis.call('PUBLISH', KEYS[2], cjson.encode(event))
return v
"""


class RedisStore(GalleryStore):
    """A gallery in Redis, shared by every process that opens the same URL."""

    def __init__(self, url: str, prefix: str = PREFIX):
        self.url = url
        self.prefix = prefix
        try:
            self.client = connect(url, socket_connect_timeout=2, socket_timeout=30)
            self.client.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise GalleryError(
                f"Cannot reach the Redis gallery at {url} ({exc}).",
                connection_fix(url, exc, "Start redis-server, or fix --gallery / FACESTREAM_GALLERY / gallery.url."),
            ) from None
        except (RedisError, ValueError) as exc:
            raise GalleryError(f"Cannot use the Redis gallery {url} ({exc}).",
                               connection_fix(url, exc, "Check the URL and password.")) from None

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r})"

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @_guard
    def version(self) -> int:
        return int(self.client.get(self.key("version")) or 0)

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Subscription:
        return RedisSubscription(self.url, self.key("events"), callback)

    def _bump(self, pipe: Any, op: str, person: str | None) -> None:
        """Raise the version and announce the change with the version it made (inside the caller's
        transaction): a matcher applies a one-person change only onto the version just before it."""
        pipe.eval(_BUMP, 2, self.key("version"), self.key("events"), op, person or "", repr(time.time()))

    # -- people -------------------------------------------------------------------------------
    def _people(self, pids: list[str], client: Any = None) -> list[Person]:
        client = client or self.client
        if not pids:
            return []
        pipe = client.pipeline(transaction=False)
        pipe.hmget(self.key("people"), pids)
        for pid in pids:
            pipe.scard(self.key("pemb", pid))
        res = pipe.execute()
        out = []
        for pid, raw, n in zip(pids, res[0], res[1:], strict=True):
            if raw is None:
                continue
            d = json.loads(raw)
            out.append(Person(pid, d["name"], d.get("metadata", {}), int(n), d["created"], d["updated"]))
        return out

    def _pid(self, ref: str, client: Any = None) -> str | None:
        client = client or self.client
        if client.hexists(self.key("people"), ref):
            return ref
        pid = client.hget(self.key("names"), str(ref).strip().casefold())
        return _text(pid) if pid else None

    @_guard
    def find_person(self, ref: str) -> Person | None:
        pid = self._pid(ref)
        people = self._people([pid]) if pid else []
        return people[0] if people else None

    def _need(self, ref: str, client: Any = None) -> str:
        pid = self._pid(ref, client)
        if pid is None:
            names = [_text(v) for v in self.client.hvals(self.key("display"))]
            raise unknown_person(ref, names)
        return pid

    @_guard
    def list_people(self) -> list[Person]:
        pids = [_text(k) for k in self.client.hkeys(self.key("people"))]
        return sorted(self._people(pids), key=lambda p: p.name.casefold())

    def _write_person(self, pipe: Any, pid: str, record: dict[str, Any], old_name: str | None) -> None:
        if old_name is not None and old_name.casefold() != record["name"].casefold():
            pipe.hdel(self.key("names"), old_name.casefold())
        pipe.hset(self.key("people"), pid, json.dumps(allow_nan=False, obj=record))
        pipe.hset(self.key("display"), pid, record["name"])
        pipe.hset(self.key("names"), record["name"].casefold(), pid)

    def _transaction(self, fn: Callable[[Any], Any], *watch: str) -> Any:
        """Run ``fn(pipe)`` under WATCH until no concurrent writer interferes."""
        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*watch)
                    out = fn(pipe)
                    pipe.execute()
                    return out
                except WatchError:
                    continue

    def _stage_enroll(self, pipe: Any, name: str, embeddings: list[NewEmbedding], metadata: dict[str, Any] | None,
                      person_id: str | None, now: float) -> tuple[str, int]:
        """Reads (under WATCH) deciding what one enrolment writes; returns (pid, embeddings added)."""
        name = check_name(name)
        metadata = check_metadata(metadata)
        if person_id:
            check_person_id(person_id)
        existing = person_id if person_id and pipe.hexists(self.key("people"), person_id) else None
        by_name = pipe.hget(self.key("names"), name.casefold())
        by_name = _text(by_name) if by_name else None
        if existing is None and by_name and person_id and by_name != person_id:
            raise GalleryError(f"The name {name!r} already belongs to person {by_name}.",
                               "Use a distinct display name, e.g. add a middle initial.")
        if existing is None and by_name is None:  # a new person: no look-alike of anyone's name
            check_distinct(name, ((_text(k), _text(v)) for k, v in pipe.hgetall(self.key("display")).items()))
        pid = existing or by_name or person_id or new_person_id()
        raw = pipe.hget(self.key("people"), pid)
        record: dict[str, Any] = (json.loads(raw) if raw else
                                  {"name": name, "metadata": {}, "created": now, "updated": now})
        old_name = record["name"] if raw else None
        if metadata:
            record["metadata"] = {**record.get("metadata", {}), **metadata}
        dims: dict[str, int | None] = {}
        rows = []
        negatives = []
        seen: set[tuple[str, str]] = set()
        for e in embeddings:
            if e.model_id not in dims:
                d = pipe.hget(self.key("dims"), e.model_id)
                dims[e.model_id] = int(d) if d else None
            v = check_vector(e, dims[e.model_id])
            dims[e.model_id] = len(v)
            if e.negative:
                if (e.model_id, "-" + e.hash) not in seen and not pipe.sismember(self.key("pneg", pid),
                                                                                 f"{e.model_id}|{e.hash}"):
                    seen.add((e.model_id, "-" + e.hash))
                    negatives.append((v.tobytes(), e))
                continue
            if (e.model_id, e.hash) in seen or pipe.hexists(self.key("owner", e.model_id), e.hash):
                continue
            seen.add((e.model_id, e.hash))
            rows.append((pid, v.tobytes(), e))
        changed = raw is None or bool(metadata) or bool(rows) or bool(negatives)
        if not changed:
            pipe.unwatch()
            return pid, 0
        pipe.multi()
        if rows:
            record["updated"] = now
        self._write_person(pipe, pid, record, old_name)
        for model_id, dim in dims.items():
            if dim is not None:
                pipe.hset(self.key("dims"), model_id, dim)
        for pid_, blob, e in rows:
            m = e.model_id
            pipe.hset(self.key("vec", m), f"{pid_}|{e.hash}", blob)
            pipe.hset(self.key("owner", m), e.hash, pid_)
            pipe.hset(self.key("info", m), e.hash,
                      json.dumps(allow_nan=False, obj={"source": e.source, "created": e.created or now}))
            if e.chip:
                pipe.hset(self.key("chip", m), e.hash, e.chip)
            pipe.sadd(self.key("pemb", pid_), f"{m}|{e.hash}")
        for blob, e in negatives:
            self._stage_negative(pipe, pid, blob, e, now)
        self._bump(pipe, "enroll", pid)
        return pid, len(rows) + len(negatives)

    def _stage_negative(self, pipe: Any, pid: str, blob: bytes, e: NewEmbedding, now: float) -> None:
        key, m = f"{pid}|{e.hash}", e.model_id
        pipe.hset(self.key("neg", m), key, blob)
        pipe.hset(self.key("neginfo", m), key,
                  json.dumps(allow_nan=False, obj={"source": e.source, "created": e.created or now}))
        if e.chip:
            pipe.hset(self.key("negchip", m), key, e.chip)
        pipe.sadd(self.key("pneg", pid), f"{m}|{e.hash}")

    @_guard
    def enroll(self, name: str, embeddings: list[NewEmbedding], metadata: dict[str, Any] | None = None,
               person_id: str | None = None) -> tuple[Person, int]:
        now = time.time()
        models = sorted({e.model_id for e in embeddings})
        watch = [self.key("names"), self.key("dims"), *(self.key("owner", m) for m in models)]
        if person_id:
            watch.append(self.key("pemb", person_id))
        pid, added = self._transaction(
            lambda pipe: self._stage_enroll(pipe, name, embeddings, metadata, person_id, now), *watch)
        return self._people([pid])[0], added

    @_guard
    def import_people(self, items: Iterable[tuple[Person, list[NewEmbedding]]], batch: int = 1000) -> int:
        """Bulk import for new people (archive import, benchmarks): ``batch`` people per MULTI/EXEC.

        People already present (by id or name) go through :meth:`enroll` one by one.
        """
        display = self.client.hgetall(self.key("display"))
        items = distinct_names(items, ((_text(k), _text(v)) for k, v in display.items()))
        n = 0
        chunk: list[tuple[Person, list[NewEmbedding]]] = []

        def flush(taken: set[tuple[str, str]]) -> None:
            if not chunk:
                return
            pipe = self.client.pipeline(transaction=True)
            dims = {_text(m): int(d) for m, d in self.client.hgetall(self.key("dims")).items()}
            stage_new_people(pipe, self.key, chunk, taken, dims, time.time())
            self._bump(pipe, "import", None)
            pipe.execute()
            chunk.clear()

        for person, embs in items:
            n += 1
            if not person.id or any(e.negative for e in embs):
                self.enroll(person.name, embs, person.metadata, person.id or None)
                continue
            chunk.append((person, embs))
            if len(chunk) >= batch:
                flush(split_known(self.client, self.key, chunk, self.enroll))
        if chunk:
            flush(split_known(self.client, self.key, chunk, self.enroll))
        return n

    @_guard
    def rename_person(self, ref: str, new_name: str) -> Person:
        new_name = check_name(new_name)
        pid = self._need(ref)

        def stage(pipe: Any) -> None:
            other = pipe.hget(self.key("names"), new_name.casefold())
            if other and _text(other) != pid:
                raise GalleryError(f"The name {new_name!r} is already taken.", "Choose a distinct name.")
            check_distinct(new_name, ((_text(k), _text(v)) for k, v in pipe.hgetall(self.key("display")).items()), pid)
            raw = pipe.hget(self.key("people"), pid)
            if raw is None:
                raise unknown_person(ref, [])
            record = json.loads(raw)
            old = record["name"]
            record.update(name=new_name, updated=time.time())
            pipe.multi()
            self._write_person(pipe, pid, record, old)
            self._bump(pipe, "rename", pid)

        self._transaction(stage, self.key("names"), self.key("people"))
        return self._people([pid])[0]

    @_guard
    def set_metadata(self, ref: str, metadata: dict[str, Any], replace: bool = False) -> Person:
        metadata = check_metadata(metadata)
        pid = self._need(ref)

        def stage(pipe: Any) -> None:
            record = json.loads(pipe.hget(self.key("people"), pid))
            record["metadata"] = dict(metadata) if replace else {**record.get("metadata", {}), **metadata}
            record["updated"] = time.time()
            pipe.multi()
            pipe.hset(self.key("people"), pid, json.dumps(allow_nan=False, obj=record))
            self._bump(pipe, "update", pid)

        self._transaction(stage, self.key("people"))
        return self._people([pid])[0]

    @_guard
    def delete_person(self, ref: str) -> Person:
        pid = self._need(ref)
        person = self._people([pid])[0]

        def stage(pipe: Any) -> None:
            members = [_text(m) for m in pipe.smembers(self.key("pemb", pid))]
            negatives = [_text(m) for m in pipe.smembers(self.key("pneg", pid))]
            raw = pipe.hget(self.key("people"), pid)
            pipe.multi()
            for member in members:
                model, h = member.rsplit("|", 1)
                pipe.hdel(self.key("vec", model), f"{pid}|{h}")
                pipe.hdel(self.key("owner", model), h)
                pipe.hdel(self.key("info", model), h)
                pipe.hdel(self.key("chip", model), h)
            for member in negatives:
                model, h = member.rsplit("|", 1)
                for kind in ("neg", "neginfo", "negchip"):
                    pipe.hdel(self.key(kind, model), f"{pid}|{h}")
            pipe.delete(self.key("pemb", pid), self.key("pneg", pid))
            if raw:
                pipe.hdel(self.key("names"), json.loads(raw)["name"].casefold())
            pipe.hdel(self.key("people"), pid)
            pipe.hdel(self.key("display"), pid)
            self._bump(pipe, "delete", pid)

        self._transaction(stage, self.key("pemb", pid), self.key("pneg", pid), self.key("people"))
        return person

    # -- embeddings ---------------------------------------------------------------------------
    @_guard
    def owner_of(self, model_id: str, hash: str) -> str | None:
        pid = self.client.hget(self.key("owner", model_id), hash)
        return _text(pid) if pid else None

    @_guard
    def embeddings_of(self, ref: str) -> list[EmbeddingInfo]:
        pid = self._need(ref)
        out = []
        for member in sorted(_text(m) for m in self.client.smembers(self.key("pemb", pid))):
            model, h = member.rsplit("|", 1)
            info = json.loads(self.client.hget(self.key("info", model), h) or "{}")
            out.append(EmbeddingInfo(h, model, info.get("source", ""), info.get("created", 0.0),
                                     bool(self.client.hexists(self.key("chip", model), h))))
        return sorted(out, key=lambda e: e.created)

    @_guard
    def remove_embedding(self, ref: str, model_id: str, hash: str) -> bool:
        pid = self._need(ref)
        member = f"{model_id}|{hash}"

        def stage(pipe: Any) -> bool:
            if not pipe.sismember(self.key("pemb", pid), member):
                pipe.unwatch()
                return False
            pipe.multi()
            pipe.hdel(self.key("vec", model_id), f"{pid}|{hash}")
            for kind in ("owner", "info", "chip"):
                pipe.hdel(self.key(kind, model_id), hash)
            pipe.srem(self.key("pemb", pid), member)
            self._bump(pipe, "forget", pid)
            return True

        return bool(self._transaction(stage, self.key("pemb", pid)))

    # -- negatives ----------------------------------------------------------------------------
    @_guard
    def add_negative(self, ref: str, embedding: NewEmbedding) -> tuple[Person, bool]:
        pid = self._need(ref)
        now = time.time()

        def stage(pipe: Any) -> bool:
            d = pipe.hget(self.key("dims"), embedding.model_id)
            v = check_vector(embedding, int(d) if d else None)
            if pipe.sismember(self.key("pneg", pid), f"{embedding.model_id}|{embedding.hash}"):
                pipe.unwatch()
                return False
            pipe.multi()
            self._stage_negative(pipe, pid, v.tobytes(), embedding, now)
            self._bump(pipe, "negative", pid)
            return True

        added = self._transaction(stage, self.key("pneg", pid))
        return self._people([pid])[0], bool(added)

    @_guard
    def remove_negative(self, ref: str, model_id: str, hash: str) -> bool:
        pid = self._need(ref)
        member = f"{model_id}|{hash}"

        def stage(pipe: Any) -> bool:
            if not pipe.sismember(self.key("pneg", pid), member):
                pipe.unwatch()
                return False
            pipe.multi()
            for kind in ("neg", "neginfo", "negchip"):
                pipe.hdel(self.key(kind, model_id), f"{pid}|{hash}")
            pipe.srem(self.key("pneg", pid), member)
            self._bump(pipe, "negative", pid)
            return True

        return bool(self._transaction(stage, self.key("pneg", pid)))

    @_guard
    def negatives_of(self, ref: str) -> list[EmbeddingInfo]:
        pid = self._need(ref)
        out = []
        for member in sorted(_text(m) for m in self.client.smembers(self.key("pneg", pid))):
            model, h = member.rsplit("|", 1)
            info = json.loads(self.client.hget(self.key("neginfo", model), f"{pid}|{h}") or "{}")
            out.append(EmbeddingInfo(h, model, info.get("source", ""), info.get("created", 0.0),
                                     bool(self.client.hexists(self.key("negchip", model), f"{pid}|{h}"))))
        return sorted(out, key=lambda e: e.created)

    # -- settings -----------------------------------------------------------------------------
    @_guard
    def get_setting(self, key: str) -> dict[str, Any] | None:
        raw = self.client.hget(self.key("settings"), key)
        return json.loads(raw) if raw else None

    @_guard
    def set_setting(self, key: str, value: dict[str, Any] | None) -> None:
        pipe = self.client.pipeline(transaction=True)
        if value is None:
            pipe.hdel(self.key("settings"), key)
        else:
            pipe.hset(self.key("settings"), key, json.dumps(allow_nan=False, obj=value))
        self._bump(pipe, "settings", None)
        pipe.execute()

    @_guard
    def model_counts(self) -> dict[str, int]:
        models = [_text(m) for m in self.client.hkeys(self.key("dims"))]
        counts = {m: int(self.client.hlen(self.key("vec", m))) for m in models}
        return {m: c for m, c in counts.items() if c}

    @_guard
    def person_rows(self, model_id: str, person_id: str) -> PersonRows | None:
        # two atomic reads (which hashes, then their rows); a write between them shows as a version change
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.key("version"))
        pipe.smembers(self.key("pemb", person_id))
        pipe.smembers(self.key("pneg", person_id))
        pipe.hget(self.key("display"), person_id)
        version, pemb, pneg, name = pipe.execute()
        mine = [f"{person_id}|{m.rsplit('|', 1)[1]}" for m in sorted(map(_text, pemb)) if m.startswith(model_id + "|")]
        negs = [f"{person_id}|{m.rsplit('|', 1)[1]}" for m in sorted(map(_text, pneg)) if m.startswith(model_id + "|")]
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.key("version"))
        pipe.hmget(self.key("vec", model_id), mine or ["-"])
        pipe.hmget(self.key("neg", model_id), negs or ["-"])
        again, rows, neg_rows = pipe.execute()
        if int(again or 0) != int(version or 0):
            return None
        return PersonRows(int(version or 0), _text(name) if name else person_id,
                          [b for b in rows if b is not None] if mine else [],
                          [b for b in neg_rows if b is not None] if negs else [])

    @_guard
    def load_matrix(self, model_id: str) -> GalleryMatrix:
        version = self.version()  # read first: a write during the load makes the next check reload again
        rows: list[tuple[str, bytes]] = []
        for field, blob in self.client.hscan_iter(self.key("vec", model_id), count=20000):
            rows.append((_text(field).rsplit("|", 1)[0], blob))
        names = {_text(k): _text(v) for k, v in self.client.hgetall(self.key("display")).items()} if rows else {}
        negatives = [(_text(field).rsplit("|", 1)[0], blob)
                     for field, blob in self.client.hscan_iter(self.key("neg", model_id), count=20000)] if rows else []
        op = self.client.hget(self.key("settings"), setting_key("operating_point", model_id))
        return GalleryMatrix.build(version, rows, names, negatives,
                                   {"operating_point": json.loads(op)} if op else {})

    @_guard
    def iter_chips(self, model_id: str) -> Iterator[tuple[str, str, str, bytes]]:
        owners = {_text(k): _text(v) for k, v in self.client.hgetall(self.key("owner", model_id)).items()}
        for h, jpeg in self.client.hscan_iter(self.key("chip", model_id), count=1000):
            h = _text(h)
            if h in owners:
                info = json.loads(self.client.hget(self.key("info", model_id), h) or "{}")
                yield owners[h], h, info.get("source", ""), jpeg

    @_guard
    def delete_model(self, model_id: str) -> int:
        owners = {_text(k): _text(v) for k, v in self.client.hgetall(self.key("owner", model_id)).items()}
        negatives = [_text(k) for k in self.client.hkeys(self.key("neg", model_id))]
        pipe = self.client.pipeline(transaction=True)
        for h, pid in owners.items():
            pipe.srem(self.key("pemb", pid), f"{model_id}|{h}")
        for key in negatives:
            pid, h = key.rsplit("|", 1)
            pipe.srem(self.key("pneg", pid), f"{model_id}|{h}")
        for kind in ("vec", "owner", "info", "chip", "neg", "neginfo", "negchip"):
            pipe.delete(self.key(kind, model_id))
        pipe.hdel(self.key("dims"), model_id)
        self._bump(pipe, "delete_model", None)
        pipe.execute()
        return len(owners)

    @_guard
    def export_people(self) -> Iterator[tuple[Person, list[NewEmbedding]]]:
        import numpy as np

        for person in self.list_people():
            embs = []
            for member in sorted(_text(m) for m in self.client.smembers(self.key("pemb", person.id))):
                model, h = member.rsplit("|", 1)
                pipe = self.client.pipeline(transaction=False)
                pipe.hget(self.key("vec", model), f"{person.id}|{h}")
                pipe.hget(self.key("chip", model), h)
                pipe.hget(self.key("info", model), h)
                blob, chip, info = pipe.execute()
                if blob is None:
                    continue
                info = json.loads(info or "{}")
                embs.append(NewEmbedding(np.frombuffer(blob, np.float32), model, h, chip,
                                         info.get("source", ""), info.get("created", 0.0)))
            for member in sorted(_text(m) for m in self.client.smembers(self.key("pneg", person.id))):
                model, h = member.rsplit("|", 1)
                key = f"{person.id}|{h}"
                pipe = self.client.pipeline(transaction=False)
                for kind in ("neg", "negchip", "neginfo"):
                    pipe.hget(self.key(kind, model), key)
                blob, chip, info = pipe.execute()
                if blob is not None:
                    info = json.loads(info or "{}")
                    embs.append(NewEmbedding(np.frombuffer(blob, np.float32), model, h, chip, info.get("source", ""),
                                             info.get("created", 0.0), negative=True))
            yield person, sorted(embs, key=lambda e: e.created)

    @_guard
    def clear(self) -> None:
        keys = list(self.client.scan_iter(match=self.prefix + "*", count=1000))
        pipe = self.client.pipeline(transaction=True)
        for key in keys:
            if key != self.key("version").encode():
                pipe.delete(key)
        self._bump(pipe, "clear", None)
        pipe.execute()

    def close(self) -> None:
        try:
            self.client.close()
        except (RedisError, OSError):
            pass
