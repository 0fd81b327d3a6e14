"""Fencing on a bad day (issue 21, items 1 and 2), with real workers, real pipelines and a real Redis.

A worker cut off from Redis (its connection through a TCP proxy frozen with SIGSTOP) once kept
recognising for 16 s beside the new holder and, when the network healed, delivered hundreds of
stale messages after the new holder's first. Now it stops the camera by itself 2/3 into its
lease, and a script refuses every message whose lease epoch is no longer the live one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from facestream.stream.attendance.redis_backend import frame_stream
from facestream.stream.cluster.bus import STREAM, LivePublisher
from facestream.stream.cluster.registry import SourceRegistry
from facestream.stream.cluster.worker import Worker
from facestream.stream.config import SourceConfig, load_config
from facestream.stream.live.pipeline import Pipeline
from tests.conftest import HAMILTON, RedisServer, entry_order, free_port
from tests.waiting import wait_until

LEASE_S = 3.0
PROXY = Path(__file__).with_name("tcp_proxy.py")


class Proxy:
    """A TCP forwarder to Redis in its own process: freeze it and the worker behind it is cut off."""

    def __init__(self, target_port: int):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, str(PROXY), str(self.port), str(target_port)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.thaw()
        self.proc.kill()
        self.proc.wait(5)


def start_worker(url: str, analyzer, worker_id: str) -> tuple[Worker, threading.Event, threading.Thread]:
    config = load_config(overrides=[f"gallery.url={url}", f"cluster.lease_seconds={LEASE_S}", "cluster.capacity=1",
                                    "cluster.heartbeat_seconds=0.5", f"cluster.source_folders=[{HAMILTON.parent}]"],
                         env={})
    reg = SourceRegistry(url)
    pipeline = Pipeline(config, [], analyzer=analyzer, matcher=None, dynamic=True)
    worker = Worker(config, pipeline, reg, LivePublisher(reg.client, config.server), worker_id=worker_id).start()
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    return worker, stop, thread




def stop_worker(w: tuple[Worker, threading.Event, threading.Thread] | None) -> None:
    """Stop what :func:`start_worker` started (None: it never started)."""
    if w is not None:
        w[1].set()
        w[2].join(10)
        w[0].stop()
        w[0].registry.close()


def door_messages(r: redis.Redis) -> list[dict]:
    """Everything published for the source, in the order written (its frames have their own stream)."""
    entries = sorted([*r.xrange(frame_stream("door")), *(e for e in r.xrange(STREAM) if e[1].get(b"s") == b"door")],
                     key=entry_order)
    return [json.loads(fields[b"m"]) for _, fields in entries]


def processed(worker: Worker) -> int:
    return sum(w.processed for w in worker.pipeline.workers if w.source.id == "door")


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_cut_off_worker_stops_by_itself_and_nothing_of_it_follows_the_new_holder(redis_url, analyzer):
    r = redis.Redis.from_url(redis_url)
    SourceRegistry(redis_url).add(SourceConfig(url=str(HAMILTON), id="door", loop=True, realtime=True))
    proxy = Proxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    a = b = None
    try:
        a = start_worker(f"redis://127.0.0.1:{proxy.port}/0", analyzer, "w-a")
        wait_until(lambda: sum(1 for m in door_messages(r) if m.get("type") == "frame") >= 10, 60, "A's frames")
        assert {m.get("worker") for m in door_messages(r)} == {"w-a"} and door_messages(r)[0]["epoch"] >= 1

        door = next(p for p in a[0].pipeline.workers if p.source.id == "door")  # A's thread for the camera
        cut_at = time.monotonic()
        proxy.freeze()  # A keeps its camera but loses Redis
        # A's last renewal was sent before the cut: it stops the camera 2/3 into the lease, on its own
        wait_until(lambda: "door" not in a[0].pipeline.running(), LEASE_S * 2 / 3 + 1.0, "A to stop the camera")
        stopped_after = time.monotonic() - cut_at
        frozen_count = door.processed
        b = start_worker(redis_url, analyzer, "w-b")  # B claims the source once A's lease has run out in Redis
        wait_until(lambda: any(m.get("worker") == "w-b" for m in door_messages(r)), 60, "B's first message")
        assert door.processed == frozen_count and door.done.is_set()  # A processed nothing since it stopped
        assert a[0].fenced_stops == 1

        proxy.thaw()  # the network heals: what A still had queued must not reach anyone
        wait_until(lambda: a[0].publisher.stats()["queued"] == 0, 15, "A's publisher to drain")
        time.sleep(1.0)
        messages = door_messages(r)
        first_b = next(i for i, m in enumerate(messages) if m.get("worker") == "w-b")
        assert [m for m in messages[first_b:] if m.get("worker") != "w-b"] == []
        epochs = [m["epoch"] for m in messages]
        assert epochs == sorted(epochs) and messages[first_b]["epoch"] > messages[0]["epoch"]  # order holds
        assert a[0].registry.holders()["door"] == "w-b"  # A, back, does not take it again
        from facestream.stream.serve.metrics import metrics_text, registry_for

        text = metrics_text(registry_for(a[0].info)).decode()  # what A's --metrics-port serves
        assert "facestream_lease_fenced_stops_total 1.0" in text
        assert 'facestream_publisher_messages_fenced_total{worker="w-a"}' in text
        text = metrics_text(registry_for(b[0].info)).decode()
        assert f'facestream_lease_epoch{{source="door"}} {float(b[0].epochs["door"])}' in text
        assert 'facestream_source_fps{source="door"}' in text
        assert stopped_after < LEASE_S  # before the lease ran out in Redis, so never beside B
    finally:
        for w in (a, b):
            stop_worker(w)
        proxy.close()


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_redis_pause_restarts_the_camera_on_the_same_worker_within_two_seconds(tmp_path, analyzer):
    """Redis paused (SIGSTOP) for twice the lease: every lease lapses. The worker stops its camera when
    its renewals fail and, once Redis answers, claims it back (a new epoch) and runs it again."""
    server = RedisServer(tmp_path)
    server.start()
    pid = server.pid()
    SourceRegistry(server.url).add(SourceConfig(url=str(HAMILTON), id="door", loop=True, realtime=True))
    w = None
    try:
        w = start_worker(server.url, analyzer, "w-solo")
        wait_until(lambda: "door" in w[0].pipeline.running() and processed(w[0]) > 5, 60, "the camera")
        epoch = w[0].epochs["door"]
        first = next(p for p in w[0].pipeline.workers if p.source.id == "door")
        os.kill(pid, signal.SIGSTOP)
        time.sleep(2 * LEASE_S)
        assert first.done.is_set()  # stopped while Redis was away: its lease could have gone to another
        os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        wait_until(lambda: w[0].epochs.get("door", 0) > epoch and any(
            p is not first and p.source.id == "door" and p.processed > 0 for p in w[0].pipeline.workers),
            10, "the camera running again")
        took = time.monotonic() - resumed
        print(f"camera back {took:.2f} s after Redis resumed")
        assert w[0].registry.lease("door") == ("w-solo", w[0].epochs["door"])  # the same worker, a new epoch
        assert took < 2.0 + 1.0, f"back after {took:.1f} s"
    finally:
        stop_worker(w)
        server.stop()


@pytest.mark.slow  # a worker process, frozen: end to end
def test_a_frozen_worker_process_publishes_nothing_after_the_new_holder(redis_url, analyzer, tmp_path):
    """Issue 21, item 1: a whole worker process frozen (SIGSTOP: a GC pause, a VM pause) past its lease once
    interleaved frames and a track_ended with the new holder's. Thawed, it must publish nothing more for the
    source: its lease's epoch is no longer the live one, and the publish script refuses it."""
    from tests.stream.cluster.test_cluster import Proc

    r = redis.Redis.from_url(redis_url)
    SourceRegistry(redis_url).add(SourceConfig(url=str(HAMILTON), id="door", loop=True, realtime=True))
    a = Proc(["worker", "--capacity", "1", "--no-attendance", "--set", f"cluster.lease_seconds={LEASE_S}",
              "--set", "cluster.heartbeat_seconds=0.5", "--set", f"cluster.source_folders=[{HAMILTON.parent}]",
              "--gallery", redis_url], tmp_path / "worker-a.log")
    b = None
    try:
        wait_until(lambda: sum(1 for m in door_messages(r) if m.get("type") == "frame") >= 10, 120,
                   "A's frames", stop_if=lambda: None if a.alive() else a.tail())
        a_id = door_messages(r)[0]["worker"]
        a.proc.send_signal(signal.SIGSTOP)  # frozen mid-stream, whatever it was doing
        b = start_worker(redis_url, analyzer, "w-b")  # claims the source once A's lease runs out in Redis
        wait_until(lambda: any(m.get("worker") == "w-b" for m in door_messages(r)), 60, "B's first message")
        time.sleep(1.0)  # B publishes for a while
        a.proc.send_signal(signal.SIGCONT)  # A wakes up believing it holds the camera
        time.sleep(2 * LEASE_S)  # long enough for it to publish whatever it had, and to notice
        messages = door_messages(r)
        first_b = next(i for i, m in enumerate(messages) if m.get("worker") == "w-b")
        assert [m for m in messages[first_b:] if m.get("worker") == a_id] == []
        assert SourceRegistry(redis_url).holders()["door"] == "w-b"
        assert a.alive(), a.tail()  # fenced, not crashed
        assert "its lease was not renewed for 2/3 of its length" in a.log.read_text()  # it noticed, and let go
    finally:
        a.proc.send_signal(signal.SIGCONT)
        a.stop()
        stop_worker(b)
