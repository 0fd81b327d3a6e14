"""Edge cases both stores must agree on, and Redis outages during iteration."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from facestream.gallery import open_store
from facestream.gallery.errors import GalleryError
from facestream.gallery.matcher import Matcher
from facestream.gallery.redis_store import RedisStore
from facestream.gallery.types import Person
from tests.gallery.conftest import emb, unit
from tests.waiting import wait_until


def test_delete_person_keeps_another_models_chip_with_the_same_hash(store):
    rng = np.random.default_rng(11)
    x = emb(unit(rng, 1)[0], model="a", tag="same-photo", chip=b"chip-x")
    y = emb(unit(rng, 1, 64)[0], model="b", tag="same-photo", chip=b"chip-y")
    assert x.hash == y.hash
    store.enroll("X", [x])
    other, _ = store.enroll("Y", [y])
    store.delete_person("X")
    assert list(store.iter_chips("a")) == []
    assert [(c[0], c[1], c[3]) for c in store.iter_chips("b")] == [(other.id, y.hash, b"chip-y")]
    assert [e.has_chip for e in store.embeddings_of("Y")] == [True]


def test_bulk_import_leaves_an_owned_hash_with_its_owner(store):
    rng = np.random.default_rng(12)
    v = unit(rng, 4)
    owner, _ = store.enroll("Owner", [emb(v[0], tag="shared", chip=b"owner-chip")])
    items = [
        (Person("new1", "Newbie"), [emb(v[1], tag="shared", chip=b"new-chip"), emb(v[2])]),
        (Person("new2", "Second"), [emb(v[3], tag="twice"), emb(v[3], tag="twice")]),
    ]
    assert store.import_people(items) == 2
    assert store.owner_of("m1", emb(v[0], tag="shared").hash) == owner.id
    assert store.get_person("Newbie").n_embeddings == 1
    assert store.get_person("Second").n_embeddings == 1
    m = store.load_matrix("m1")
    assert sorted(m.names) == ["Newbie", "Owner", "Second"] and len(m.matrix) == 3
    owner_rows = m.matrix[m.row_person == m.names.index("Owner")]
    assert [r.tobytes() for r in owner_rows] == [v[0].tobytes()]


def _stop_then(redis_server, fn) -> None:
    redis_server.stop()
    try:
        with pytest.raises(GalleryError, match="unreachable"):
            fn()
    finally:
        redis_server.start()


def test_iterating_while_redis_is_down_raises_gallery_error(redis_server, redis_url):
    store = open_store(redis_url)
    rng = np.random.default_rng(13)
    for i in range(2):
        store.enroll(f"P{i}", [emb(unit(rng, 1)[0], chip=b"jpg")])
    chips, people = store.iter_chips("m1"), store.export_people()
    next(chips), next(people)  # mid-iteration: the next item needs Redis again
    _stop_then(redis_server, lambda: next(chips))
    _stop_then(redis_server, lambda: next(people))
    _stop_then(redis_server, lambda: list(store.iter_chips("m1")))  # before the first item too
    store.close()


class CountingStore(RedisStore):
    """A real RedisStore that counts matrix loads."""

    loads = 0

    def load_matrix(self, model_id: str):
        self.loads += 1
        return super().load_matrix(model_id)


def test_matcher_reloads_only_when_the_version_moved(redis_url):
    store = CountingStore(redis_url)
    v = unit(np.random.default_rng(14), 1)[0]
    with Matcher(store, "m1", threshold=0.9, device="cpu") as matcher:
        assert matcher._sub.connected.wait(5)
        # Events that bring no new version (a repeated or already-loaded change) cost no reload.
        seen = wait_until(lambda: matcher.events, 5, "the resync on subscribing")  # handled before we count
        for _ in range(3):
            store.client.publish(store.key("events"), json.dumps({"op": "enroll", "person": "x", "time": time.time()}))
        wait_until(lambda: matcher.events >= seen + 3, 5, "the three events handled")  # before the store moves on
        store.enroll("Vera", [emb(v)])
        deadline = time.monotonic() + 5
        while matcher.version != store.version() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert matcher.identify(v).best.name == "Vera"
        assert store.loads == 1 and matcher.deltas == 1  # the first load; the enrolment read as a one-person delta
    store.close()
