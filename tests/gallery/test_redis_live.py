"""Two real processes on one Redis: changes reach a running matcher through pub/sub, outages lose nothing."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from facestream.gallery import open_store
from facestream.gallery.errors import GalleryError
from facestream.gallery.matcher import Matcher
from tests.conftest import ROOT
from tests.gallery.conftest import emb
from tests.gallery.watch_matcher import vector


class Child:
    """``watch_matcher`` in a separate Python process, its stdout lines in a queue."""

    def __init__(self, url: str, seed: int):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.gallery.watch_matcher", url, str(seed)],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next(self, timeout: float = 30.0) -> dict:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError(f"child said nothing; stderr: {self.proc.stderr.read()[-2000:]}") from None

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def child(redis_url):
    c = Child(redis_url, seed=99)
    assert c.next() == {"ready": True}
    assert c.next()["best"] is None  # empty gallery
    yield c
    c.close()


def test_enrol_and_delete_reach_another_process_within_a_second(redis_url, child):
    store = open_store(redis_url)
    v = vector(99)
    t0 = time.time()
    store.enroll("Remote Rita", [emb(v)])
    seen = child.next(timeout=5)
    print(f"\nenrol seen by the other process after {1000 * (seen['t'] - t0):.1f} ms")
    assert seen["best"] == "Remote Rita"
    assert seen["t"] - t0 < 1.0
    t0 = time.time()
    store.delete_person("Remote Rita")
    seen = child.next(timeout=5)
    print(f"delete seen by the other process after {1000 * (seen['t'] - t0):.1f} ms")
    assert seen["best"] is None and seen["t"] - t0 < 1.0
    assert child.proc.poll() is None


def test_redis_going_away_and_coming_back(redis_server, redis_url, child):
    store = open_store(redis_url)
    v = vector(99)
    store.enroll("Steady Sam", [emb(v)])
    assert child.next(timeout=5)["best"] == "Steady Sam"
    with Matcher(store, "m1", threshold=0.9, device="cpu") as matcher:
        assert matcher.identify(v).best.name == "Steady Sam"
        redis_server.stop()
        # Writes fail with a clear message; searches go on from the cached matrix.
        with pytest.raises(GalleryError, match="unreachable"):
            store.enroll("Lost Larry", [emb(vector(5))])
        with pytest.raises(GalleryError, match="unreachable"):
            store.list_people()
        assert matcher.identify(v).best.name == "Steady Sam"
        time.sleep(0.3)
        assert child.proc.poll() is None  # the other process keeps running too
        redis_server.start()  # a fresh, empty server (no persistence in the fixture)
        # Both matchers resync on reconnect: the new server is empty.
        assert child.next(timeout=10)["best"] is None
        deadline = time.monotonic() + 10
        while matcher.identify(v).best is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert matcher.identify(v).best is None
        store.enroll("Steady Sam", [emb(v)])  # the same store object works again
        assert child.next(timeout=5)["best"] == "Steady Sam"


def test_redis_down_at_start(redis_server, redis_url):
    redis_server.stop()
    try:
        with pytest.raises(GalleryError, match="Cannot reach the Redis gallery"):
            open_store(redis_url)
    finally:
        redis_server.start()


def test_enrolment_cut_by_outage_keeps_whole_people(redis_server, redis_url):
    """People written before Redis went away survive (saved to disk here); the one in flight is absent."""
    import redis

    store = open_store(redis_url)
    rng = np.random.default_rng(3)
    store.enroll("First", [emb(x) for x in rng.standard_normal((3, 128)).astype(np.float32)])
    redis.Redis.from_url(redis_url).save()  # snapshot to the server's dir, loaded on restart
    redis_server.stop()
    try:
        with pytest.raises(GalleryError, match="not applied"):
            store.enroll("Second", [emb(x) for x in rng.standard_normal((3, 128)).astype(np.float32)])
    finally:
        redis_server.start()
        dump = redis_server.workdir / "dump.rdb"
    try:
        assert [p.name for p in store.list_people()] == ["First"]
        assert store.get_person("First").n_embeddings == 3
        assert store.find_person("Second") is None
    finally:
        redis.Redis.from_url(redis_url).flushdb()
        dump.unlink(missing_ok=True)


def _snapshot(data) -> tuple:
    """A matrix as sets, independent of row order: (person -> name, rows per person, negatives per person)."""
    rows = {(data.person_ids[p], data.matrix[i].tobytes()) for i, p in enumerate(data.row_person)}
    negs = {(data.person_ids[p], data.negatives[i].tobytes()) for i, p in enumerate(data.negative_person)}
    return dict(zip(data.person_ids, data.names, strict=True)), rows, negs


def test_a_change_to_one_person_is_applied_without_reading_the_whole_gallery(redis_url):
    """Issue 21, item 6: every enrolment made every worker reload the whole matrix. A one-person change is
    now read for that person only, and the result equals a full reload after every kind of change."""
    from tests.gallery.conftest import unit

    rng = np.random.default_rng(5)
    store = open_store(redis_url)
    other = open_store(redis_url)  # the changes come from another client, as from another process
    for k in range(30):
        store.enroll(f"Person {k}", [emb(v) for v in unit(rng, 2)])
    with Matcher(store, "m1", threshold=0.9, device="cpu") as matcher:
        assert matcher._sub.connected.wait(5)  # a change made before the subscription would be a resync, not a delta
        reloads = matcher.reloads

        def settled(deltas: int) -> None:
            deadline = time.time() + 5
            while matcher.deltas < deltas and time.time() < deadline:
                time.sleep(0.02)
            assert matcher.deltas == deltas and matcher._index.data.version == store.version()
            assert _snapshot(matcher._index.data) == _snapshot(store.load_matrix("m1"))

        fresh = unit(rng, 1)[0]
        other.enroll("Newcomer", [emb(fresh)])
        settled(1)
        assert matcher.identify(fresh).best.name == "Newcomer"
        other.enroll("Person 3", [emb(unit(rng, 1)[0])])  # one more photo of someone enrolled
        settled(2)
        other.rename_person("Person 7", "Person Seven")
        settled(3)
        other.add_negative("Person 9", emb(unit(rng, 1)[0]))
        settled(4)
        other.delete_person("Person 0")  # the first person: everyone after moves up by one
        settled(5)
        other.delete_person("Newcomer")
        settled(6)
        assert matcher.identify(fresh).best is None or matcher.identify(fresh).best.name != "Newcomer"
        assert matcher.reloads == reloads  # no whole-gallery read for any of them
        other.set_setting("operating_point", None)  # not about one person: read it all
        deadline = time.time() + 5
        while matcher.reloads == reloads and time.time() < deadline:
            time.sleep(0.02)
        assert matcher.reloads == reloads + 1
    store.close()
    other.close()
