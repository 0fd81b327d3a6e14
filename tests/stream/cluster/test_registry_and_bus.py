"""Leases and the live stream on a real Redis: one holder per source, takeover after expiry, fan-in with two
gateways reading every message once, in order, and no replay of stale frames."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis

from facestream.errors import FacestreamError
from facestream.stream.attendance.redis_backend import frame_stream
from facestream.stream.cluster.bus import STREAM, LivePublisher, LiveReader, watch
from facestream.stream.cluster.registry import SourceRegistry
from facestream.stream.config import ServerConfig, SourceConfig
from facestream.stream.serve.server import StreamServer
from tests.conftest import entry_order


def test_sources_are_declared_once_and_leased_to_one_worker(redis_url):
    reg = SourceRegistry(redis_url)
    reg.add(SourceConfig(url="rtsp://cam/1", id="door"))
    reg.add(SourceConfig(url="rtsp://cam/2", id="hall", realtime=True))
    assert [s.id for s in reg.sources()] == ["door", "hall"]
    with pytest.raises(FacestreamError, match="needs an id"):
        reg.add(SourceConfig(url="rtsp://cam/3"))
    with pytest.raises(FacestreamError, match="not valid"):
        reg.add(SourceConfig(url="rtsp://cam/3", id="a|b"))
    reg.client.delete("facestream:epoch:door", "facestream:lease:door")
    assert reg.claim("door", "w1", 0.5) == 1 and reg.claim("door", "w2", 0.5) == 0
    assert reg.renew(["door"], "w1", 0.5) == {"door": 1}
    assert reg.renew(["door"], "w2", 0.5) == {"door": 0}  # only the holder renews
    assert reg.holders() == {"door": "w1", "hall": None} and reg.lease("door") == ("w1", 1)
    time.sleep(0.7)  # w1 died: its lease runs out
    assert reg.holders()["door"] is None and reg.claim("door", "w2", 5) == 2  # every claim a new epoch
    assert reg.renew(["door"], "w1", 5) == {"door": 0}  # the old holder learns it lost the source
    assert reg.lease("door") == ("w2", 2)
    assert reg.release(["door"], "w1") == 0 and reg.release(["door"], "w2") == 1
    reg.remove("hall")
    with pytest.raises(FacestreamError, match="No source 'hall'"):
        reg.remove("hall")
    with pytest.raises(FacestreamError, match="through Redis"):
        SourceRegistry("sqlite:///x.db")
    reg.close()


def test_workers_heartbeats_expire(redis_url):
    reg = SourceRegistry(redis_url)
    reg.heartbeat("w1", {"sources": ["door"]})
    assert [w["id"] for w in reg.workers(5)] == ["w1"]
    time.sleep(0.3)
    assert reg.workers(0.1) == [] and reg.client.hlen("facestream:workers") == 0  # a dead worker's entry is removed
    reg.close()


class Collector:
    def __init__(self, server: StreamServer):
        self.messages: list[dict] = []
        self.server = server

    async def run(self, n: int, seconds: float) -> None:
        from websockets.asyncio.client import connect

        async with connect(f"ws://127.0.0.1:{self.server.port}/") as ws:
            await ws.recv()
            self.ready = True
            deadline = time.time() + seconds
            while len(self.messages) < n and time.time() < deadline:
                try:
                    self.messages.append(json.loads(await asyncio.wait_for(ws.recv(), 0.5)))
                except asyncio.TimeoutError:
                    pass


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_two_gateways_each_get_every_message_once_in_order_and_no_stale_replay(redis_url):
    r = redis.Redis.from_url(redis_url)
    publisher = LivePublisher(r, ServerConfig(jpeg_fps=0)).start()
    publisher.publish({"type": "frame", "source": "cam0", "frame": -1}, "cam0")  # before any gateway: stale
    time.sleep(0.5)
    # queues that hold the whole burst: this test is about the bus (bounded queues are tested with the server)
    servers = [StreamServer(ServerConfig(port=0, client_queue=1000), static_dir=None).start() for _ in range(2)]
    readers = [LiveReader(redis.Redis.from_url(redis_url), s).start() for s in servers]
    collectors = [Collector(s) for s in servers]
    n = 300

    async def scenario() -> None:
        tasks = [asyncio.create_task(c.run(n, 30)) for c in collectors]
        await asyncio.sleep(1.0)  # clients connected, readers at the stream's end
        for i in range(n):
            source = f"cam{i % 3}"
            publisher.publish({"type": "frame", "source": source, "frame": i}, source)
            if i % 50 == 0:
                await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)

    try:
        asyncio.run(scenario())
        for c in collectors:
            for k in range(3):  # each source's frames: all, once, in order; the stale one never replayed
                assert [m["frame"] for m in c.messages if m["source"] == f"cam{k}"] == list(range(k, n, 3))
        assert publisher.stats()["sent"] == n + 1 and publisher.stats()["dropped"] == 0
        assert sum(r.xlen(frame_stream(f"cam{k}")) for k in range(3)) == n + 1  # each source its own stream
        assert r.xlen(STREAM) == 0
    finally:
        for rd in readers:
            rd.stop()
        for s in servers:
            s.stop()
        publisher.stop()


def test_jpegs_only_while_a_gateway_viewer_watches(redis_url):
    import numpy as np

    r = redis.Redis.from_url(redis_url)
    publisher = LivePublisher(r, ServerConfig(jpeg_fps=60)).start()
    image = np.zeros((36, 64, 3), np.uint8)
    publisher.publish({"type": "frame", "source": "cam0"}, "cam0", image=image)
    time.sleep(0.3)
    last = r.xrevrange(frame_stream("cam0"), count=1)[0][1]
    assert b"j" not in last  # nobody watches: no JPEG encoded or sent
    watch(r, ["cam0"], 5.0)  # what a gateway with a viewer of cam0 says
    deadline = time.time() + 5  # the publisher's thread reads the watch hash once a second
    while publisher._watchers() != {"cam0"} and time.time() < deadline:
        time.sleep(0.05)
    publisher.publish({"type": "frame", "source": "cam0"}, "cam0", image=image)
    time.sleep(0.3)
    last = r.xrevrange(frame_stream("cam0"), count=1)[0][1]
    assert last[b"j"].startswith(b"/9j/")  # a JPEG, base64
    publisher.stop()


def test_a_worker_lets_go_of_removed_sources_and_claims_up_to_its_capacity(redis_url, analyzer):
    """One worker round by round (real pipeline, real Redis): claims within capacity, drops what was removed."""
    from facestream.stream.cluster.worker import Worker
    from facestream.stream.config import load_config
    from facestream.stream.live.pipeline import Pipeline
    from tests.conftest import HAMILTON

    config = load_config(overrides=[f"gallery.url={redis_url}", "cluster.capacity=2", "cluster.lease_seconds=3",
                                    f"cluster.source_folders=[{HAMILTON.parent}]"], env={})
    reg = SourceRegistry(redis_url)
    for i in range(3):
        reg.add(SourceConfig(url=str(HAMILTON), id=f"clip{i}", loop=True, realtime=True))
    pipeline = Pipeline(config, [], analyzer=analyzer, matcher=None, dynamic=True)
    worker = Worker(config, pipeline, reg, LivePublisher(reg.client, config.server), worker_id="w-test").start()
    try:
        worker.step()
        held = set(worker.held)
        assert len(held) == 2 and all(reg.holders()[s] == "w-test" for s in held)
        deadline = time.time() + 30
        while sorted(pipeline.running()) != sorted(held) and time.time() < deadline:
            time.sleep(0.2)
        assert sorted(pipeline.running()) == sorted(held)  # opened in the background
        gone = sorted(held)[0]
        reg.remove(gone)
        worker.step()
        assert gone not in worker.held and reg.holders().get(gone) is None
        assert len(worker.held) == 2  # took the free third source in the same round
        deadline = time.time() + 30
        while gone in pipeline.running() and time.time() < deadline:
            time.sleep(0.2)
        assert gone not in pipeline.running()
    finally:
        worker.stop()
        reg.close()
    assert reg_leases_free(redis_url)


def reg_leases_free(url: str) -> bool:
    r = redis.Redis.from_url(url)
    return not r.keys("facestream:lease:*")


def test_junk_in_the_stream_or_the_watch_hash_is_skipped_and_counted(redis_url):
    """Anyone who can write to Redis could once stop every dashboard with one non-UTF-8 entry, and every
    worker's frames with one junk watch value (issue 21, item 5): now each is counted and skipped."""
    r = redis.Redis.from_url(redis_url)
    r.delete(STREAM, "facestream:watch")
    server = StreamServer(ServerConfig(port=0, client_queue=100), static_dir=None).start()
    reader = LiveReader(redis.Redis.from_url(redis_url), server).start()
    collector = Collector(server)
    publisher = LivePublisher(r, ServerConfig(jpeg_fps=60)).start()
    r.hset("facestream:watch", mapping={"cam0": "not-a-time", "*": "nan", "cam1": f"{time.time() + 60}"})
    assert publisher._refresh_watchers() == {"cam1"}  # junk ignored, the real entry kept

    async def scenario() -> None:
        task = asyncio.create_task(collector.run(1, 15))
        await asyncio.sleep(1.0)
        for junk in ({"m": b"\xff\xfe not utf-8"}, {"m": "not json"}, {"m": "[1, 2]"}, {"s": "cam0"},
                     {"m": '{"type": "frame"}', "j": b"\xff"}):
            r.xadd(STREAM, junk)
        r.xadd(STREAM, {"m": '{"type": "frame", "source": "cam0", "frame": 7}', "s": "cam0"})
        await task

    try:
        asyncio.run(scenario())
        assert [m.get("frame") for m in collector.messages] == [7]
        stats = reader.stats()
        assert stats["rejected"] == 5 and stats["reading"]
        watch(r, ["cam2"])  # a gateway renewing its entries clears the junk instead of failing on it
        assert set(r.hkeys("facestream:watch")) == {b"cam1", b"cam2"}
    finally:
        publisher.stop()
        reader.stop()
        server.stop()


def test_the_cluster_keeps_time_by_redis_not_by_each_machine(redis_url, monkeypatch):
    """A gateway 10 s ahead must not bury a live worker; one 10 s behind must not stop JPEGs (issue 21,
    item 7). Each side runs with its own clock skewed, against the same real Redis."""
    reg = SourceRegistry(redis_url)
    reg.client.delete("facestream:workers", "facestream:watch")
    real = time.time
    reg.heartbeat("w1", {"sources": []})  # the worker's clock is right
    monkeypatch.setattr(time, "time", lambda: real() + 10)  # the gateway's is 10 s ahead
    assert [w["id"] for w in reg.workers(5)] == ["w1"]
    monkeypatch.setattr(time, "time", lambda: real() - 10)  # a gateway 10 s behind says a viewer watches
    watch(reg.client, ["cam0"], 6.0)
    monkeypatch.setattr(time, "time", real)
    publisher = LivePublisher(reg.client, ServerConfig(jpeg_fps=60))
    assert publisher._refresh_watchers() == {"cam0"}  # still watched by the worker's (correct) clock
    reg.client.hset("facestream:workers", "junk", "not json")
    assert [w["id"] for w in reg.workers(5)] == ["w1"] and not reg.client.hexists("facestream:workers", "junk")
    reg.close()


def test_a_worker_rides_out_a_lapsed_lease_and_an_empty_redis(redis_url, analyzer):
    """Issue 21, item 2: a lease that ran out during a Redis stall is won back without restarting the camera;
    Redis restarted empty gets the config's sources back and they run again."""
    from facestream.stream.cluster.worker import Worker
    from facestream.stream.config import load_config
    from facestream.stream.live.pipeline import Pipeline
    from tests.conftest import HAMILTON

    redis.Redis.from_url(redis_url).flushdb()
    source = SourceConfig(url=str(HAMILTON), id="door", loop=True, realtime=True)
    config = load_config(overrides=[f"gallery.url={redis_url}", "cluster.lease_seconds=3"], env={})
    config = config.model_copy(update={"sources": [source]})
    reg = SourceRegistry(redis_url)
    pipeline = Pipeline(config, [], analyzer=analyzer, matcher=None, dynamic=True)
    worker = Worker(config, pipeline, reg, LivePublisher(reg.client, config.server), worker_id="w-blip").start()
    try:
        worker.step()
        deadline = time.time() + 30
        while pipeline.running() != ["door"] and time.time() < deadline:
            time.sleep(0.2)
        first = next(w for w in pipeline.workers if w.source.id == "door")
        reg.client.delete("facestream:lease:door")  # what a 6 s stall does to a 3 s lease
        worker.step()
        assert worker.held == {"door": source} and reg.holders()["door"] == "w-blip"
        assert next(w for w in pipeline.workers if w.source.id == "door") is first  # never stopped
        reg.client.flushdb()  # Redis restarted with nothing
        worker.step()
        assert [s.id for s in reg.sources()] == ["door"] and reg.holders()["door"] == "w-blip"
        assert pipeline.running() == ["door"]
    finally:
        worker.stop()
        reg.close()


def test_a_message_of_a_lost_lease_is_refused_by_redis_itself(redis_url):
    """A worker frozen between its own lease check and the write (a GC pause, a VM migration) must still
    write nothing once another worker holds the source: the publish script compares the lease token."""
    from facestream.stream.cluster.bus import Held

    reg = SourceRegistry(redis_url)
    r = reg.client
    old = LivePublisher(r, ServerConfig(), fencing=True).start()
    epoch = reg.claim("door", "w-old", 0.3)
    old.hold("door", Held("w-old", epoch, time.monotonic() + 60))  # its own clock says the lease holds
    old.publish({"type": "frame", "frame": 1}, "door")
    old.publish({"type": "attendance"})  # to everyone: not a source's, not fenced
    old.publish({"type": "frame", "frame": 9}, "hall")  # a source it does not hold: dropped at once
    deadline = time.time() + 5
    while r.xlen(STREAM) + r.xlen(frame_stream("door")) < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # its lease runs out in Redis; another worker claims the source
    new_epoch = reg.claim("door", "w-new", 5)
    assert new_epoch == epoch + 1
    old.publish({"type": "frame", "frame": 2}, "door")  # the frozen worker wakes up and sends
    deadline = time.time() + 5
    while old.stats()["fenced"] < 2 and time.time() < deadline:
        time.sleep(0.05)
    old.stop()
    entries = sorted([*r.xrange(frame_stream("door")), *r.xrange(STREAM)], key=entry_order)  # the order written
    messages = [json.loads(f[b"m"]) for _, f in entries]
    assert [m.get("frame") for m in messages] == [1, None]
    assert messages[0]["worker"] == "w-old" and messages[0]["epoch"] == epoch and "epoch" not in messages[1]
    assert old.stats()["fenced"] == 2  # "hall" here, frame 2 by the script in Redis
    reg.close()


def test_a_gateway_drops_messages_of_an_older_epoch_than_it_has_seen(redis_url):
    server = StreamServer(ServerConfig(port=0, client_queue=100), static_dir=None)
    reader = LiveReader(redis.Redis.from_url(redis_url), server)
    for epoch, frame in ((2, 10), (1, 99), (2, 11), (3, 1)):
        text = json.dumps({"type": "frame", "source": "door", "frame": frame, "epoch": epoch})
        reader._deliver({b"s": b"door", b"m": text.encode()}, 0.0)
    reader._deliver({b"s": b"hall", b"m": b'{"type": "frame", "epoch": 1}'}, 0.0)  # each source its own epochs
    assert reader.stats()["received"] == 4 and reader.stats()["stale"] == 1


def test_a_worker_opens_only_the_sources_its_policy_allows(redis_url, analyzer, tmp_path):
    """Issue 21, item 5: one HSET in facestream:sources once made a worker read a local file, fetch an internal
    URL and listen on 0.0.0.0. Entries that fail the policy are refused, said why, and never claimed."""
    from facestream.stream.cluster.worker import Worker
    from facestream.stream.config import load_config
    from facestream.stream.live.pipeline import Pipeline
    from tests.conftest import EXAMPLES, HAMILTON

    reg = SourceRegistry(redis_url)
    secret = tmp_path / "secret.jpg"
    secret.write_bytes((EXAMPLES / "Joe_Biden" / "biden.jpg").read_bytes())
    hostile = {"file": str(secret), "file-url": f"file://{secret}", "escape": f"{HAMILTON.parent}/../../{secret}",
               "loopback": "http://127.0.0.1:6379/", "listen": "rtsp://0.0.0.0:8554/cam", "metadata":
               "http://169.254.169.254/latest/meta-data/", "tcp": "tcp://0.0.0.0:9000?listen", "device": "0"}
    for sid, url in hostile.items():
        reg.add(SourceConfig(url=url, id=sid))
    reg.add(SourceConfig(url=str(HAMILTON), id="clip", loop=True, realtime=True))  # inside source_folders
    own = SourceConfig(url=str(secret), id="own", loop=True)  # in the worker's own config: trusted
    config = load_config(overrides=[f"gallery.url={redis_url}", "cluster.capacity=20",
                                    f"cluster.source_folders=[{HAMILTON.parent}]"], env={})
    config = config.model_copy(update={"sources": [own]})
    pipeline = Pipeline(config, [], analyzer=analyzer, matcher=None, dynamic=True)
    worker = Worker(config, pipeline, reg, LivePublisher(reg.client, config.server), worker_id="w-policy").start()
    try:
        worker.step()
        assert sorted(worker.held) == ["clip", "own"]
        assert sorted(worker.refused) == sorted(hostile)
        assert "source_folders" in worker.refused["file"] and "source_folders" in worker.refused["escape"]
        assert "0.0.0.0" in worker.refused["listen"] and "169.254.169.254" in worker.refused["metadata"]
        assert "127.0.0.1" in worker.refused["loopback"] and "tcp://" in worker.refused["tcp"]
        assert "allow_devices" in worker.refused["device"]
        assert all(reg.holders()[s] is None for s in hostile)  # left for a worker whose policy allows them
        assert worker.info()["refused"] == worker.refused
    finally:
        worker.stop()
        reg.close()


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_sources_spread_over_the_workers_and_again_after_a_worker_comes_back(redis_url, analyzer):
    """Issue 21, item 6: 4 sources on 2 workers once split 4/0 or 3/1 for good, and a restarted worker stayed
    idle. Each worker now holds its fair share, ceil(sources / live workers), shedding the rest."""
    from facestream.stream.cluster.worker import Worker
    from facestream.stream.config import load_config
    from facestream.stream.live.pipeline import Pipeline
    from tests.conftest import HAMILTON

    config = load_config(overrides=[f"gallery.url={redis_url}", "cluster.capacity=4", "cluster.lease_seconds=3",
                                    f"cluster.source_folders=[{HAMILTON.parent}]"], env={})
    reg = SourceRegistry(redis_url)
    for i in range(4):
        reg.add(SourceConfig(url=str(HAMILTON), id=f"clip{i}"))

    def worker(name: str) -> Worker:  # each source stops after 3 frames: the leases are what is tested
        pipeline = Pipeline(config, [], analyzer=analyzer, matcher=None, dynamic=True, max_frames=3)
        w = Worker(config, pipeline, SourceRegistry(redis_url), LivePublisher(reg.client, config.server),
                   worker_id=name)
        return w.start()

    def rounds(workers: list[Worker], n: int) -> list[int]:
        for _ in range(n):
            for w in workers:
                w._heartbeat()
            for w in workers:
                w.step()
            time.sleep(0.3)
        return sorted(len(w.held) for w in workers)

    a = worker("w-a")
    b = c = None
    try:
        assert rounds([a], 1) == [4]  # alone: everything
        b = worker("w-b")
        assert rounds([a, b], 3) == [2, 2]  # within 3 periods of a second worker
        held = {s: w for w in (a, b) for s in w.held}
        assert {s: reg.holders()[s] for s in held} == {s: w.id for s, w in held.items()}
        b.stop()  # B goes away (its leases released, as a kill's run out)
        b = None
        assert rounds([a], 2) == [4]
        c = worker("w-c")  # B's machine is back under a new id
        assert rounds([a, c], 3) == [2, 2]
    finally:
        for w in (a, b, c):
            if w is not None:
                w.stop()
        reg.close()


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_gateway_reads_only_the_frames_of_the_sources_its_clients_watch(redis_url):
    """Issue 21, item 6: every gateway read every camera's frames through one stream. With 100 sources at
    30 fps and one client watching 4, the gateway now reads those 4 sources' frames (plus events): <= 120 msg/s."""
    r = redis.Redis.from_url(redis_url)
    server = StreamServer(ServerConfig(port=0, client_queue=5000), static_dir=None).start()
    reader = LiveReader(redis.Redis.from_url(redis_url), server).start()
    publisher = LivePublisher(r, ServerConfig(jpeg_fps=0)).start()
    watched = ["s0", "s1", "s2", "s3"]
    got: list[dict] = []

    async def client() -> None:
        from websockets.asyncio.client import connect

        async with connect(f"ws://127.0.0.1:{server.port}/?sources={','.join(watched)}") as ws:
            await ws.recv()  # hello
            await asyncio.sleep(1.5)  # the reader picks the watched streams up (checked every second)
            start = time.monotonic()
            for k in range(60):  # 100 sources x 30 frames a second, for two seconds
                for s in range(100):
                    publisher.publish({"type": "frame", "source": f"s{s}", "frame": k}, f"s{s}")
                await asyncio.sleep(max(0.0, start + (k + 1) / 30 - time.monotonic()))
            publisher.publish({"type": "attendance", "session": "x"})  # for every client, whatever it watches
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(got) < 4 * 60 + 1:
                try:
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), 1.0)))
                except asyncio.TimeoutError:
                    continue

    try:
        asyncio.run(client())
        frames = [m for m in got if m["type"] == "frame"]
        assert sorted({m["source"] for m in frames}) == watched and len(frames) == 4 * 60
        assert any(m["type"] == "attendance" for m in got)
        stats = reader.stats()
        assert stats["streams"] == 5  # the live stream and the four watched sources' frames
        assert stats["received"] <= 4 * 60 + 1  # 120 frames a second, not 3,000
        assert publisher.stats()["sent"] == 100 * 60 + 1 and publisher.stats()["dropped"] == 0
    finally:
        publisher.stop()
        reader.stop()
        server.stop()
