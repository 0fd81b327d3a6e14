"""Bulk loading of new people into the Redis gallery: one chunk of people staged into one MULTI/EXEC."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from redis.typing import EncodableT, FieldT

from facestream.gallery.store import check_metadata, check_name, check_person_id, check_vector
from facestream.gallery.types import NewEmbedding, Person


def fields(mapping: Mapping[str, str] | Mapping[str, bytes]) -> dict[FieldT, EncodableT]:
    """A hash's fields as redis-py's ``hset(mapping=...)`` types them."""
    return dict(mapping.items())


def stage_new_people(pipe: Any, key: Callable[..., str], chunk: list[tuple[Person, list[NewEmbedding]]],
                     taken: set[tuple[str, str]], dims: dict[str, int], now: float) -> None:
    """Queue on ``pipe`` every write that adds the (new) people of ``chunk``: records, names, vectors, owners,
    chips, model dimensions. ``taken``: (model, hash) pairs already owned (first owner wins, as in SQLite)."""
    people: dict[str, str] = {}
    display: dict[str, str] = {}
    names: dict[str, str] = {}
    vec: dict[str, dict[str, bytes]] = {}
    owner: dict[str, dict[str, str]] = {}
    info: dict[str, dict[str, str]] = {}
    chips: dict[str, dict[str, bytes]] = {}
    for person, embs in chunk:
        name = check_name(person.name)
        check_person_id(person.id)
        people[person.id] = json.dumps(allow_nan=False, obj={"name": name, "metadata": check_metadata(person.metadata),
                                        "created": person.created or now, "updated": person.updated or now})
        display[person.id] = name
        names[name.casefold()] = person.id
        members = []
        for e in embs:
            v = check_vector(e, dims.get(e.model_id))
            dims[e.model_id] = len(v)
            if (e.model_id, e.hash) in taken:  # already someone's: first owner wins, as in SQLite
                continue
            taken.add((e.model_id, e.hash))
            vec.setdefault(e.model_id, {})[f"{person.id}|{e.hash}"] = v.tobytes()
            owner.setdefault(e.model_id, {})[e.hash] = person.id
            info.setdefault(e.model_id, {})[e.hash] = json.dumps(allow_nan=False, obj={"source": e.source,
                                                                  "created": e.created or now})
            if e.chip:
                chips.setdefault(e.model_id, {})[e.hash] = e.chip
            members.append(f"{e.model_id}|{e.hash}")
        if members:
            pipe.sadd(key("pemb", person.id), *members)
    for hash_name, texts in (("people", people), ("display", display), ("names", names)):
        pipe.hset(key(hash_name), mapping=fields(texts))
    for kind, per_model in (("vec", vec), ("owner", owner), ("info", info), ("chip", chips)):
        for m, values in per_model.items():
            pipe.hset(key(kind, m), mapping=fields(values))
    if dims:
        pipe.hset(key("dims"), mapping={m: d for m, d in dims.items() if d is not None})


def split_known(client: Any, key: Callable[..., str], chunk: list[tuple[Person, list[NewEmbedding]]],
                enroll: Callable[..., Any]) -> set[tuple[str, str]]:
    """Enrol people of ``chunk`` who already exist (by id or name) one by one with ``enroll``, and drop them
    from ``chunk``. Returns the ``(model_id, hash)`` pairs of the remaining people that are already stored."""
    pipe = client.pipeline(transaction=False)
    for person, _ in chunk:
        pipe.hexists(key("people"), person.id)
        pipe.hexists(key("names"), person.name.strip().casefold())
    flags = pipe.execute()
    seen: set[str] = set()
    fresh = []
    for j, (person, embs) in enumerate(chunk):
        name_key = person.name.strip().casefold()
        if flags[2 * j] or flags[2 * j + 1] or name_key in seen:
            enroll(person.name, embs, person.metadata, person.id)
        else:
            seen.add(name_key)
            fresh.append((person, embs))
    chunk[:] = fresh
    keys = [(e.model_id, e.hash) for _, embs in fresh for e in embs]
    pipe = client.pipeline(transaction=False)
    for model_id, h in keys:
        pipe.hexists(key("owner", model_id), h)
    return {k for k, owned in zip(keys, pipe.execute(), strict=True) if owned}
