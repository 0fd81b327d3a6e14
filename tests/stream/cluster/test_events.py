"""Durable events (issue 21, item 4): track and attendance events through Redis consumer groups reach an
integration at least once, across a consumer that freezes and one that is killed and restarted; frames stay
out of it; an erasure removes a person's events and keeps every group's place."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis

from facestream.stream.attendance import open_attendance_store
from facestream.stream.attendance.redis_backend import frame_stream
from facestream.stream.cluster.bus import STREAM, Held, LivePublisher, LiveReader
from facestream.stream.cluster.events import EVENTS, EventConsumer
from facestream.stream.cluster.registry import SourceRegistry
from facestream.stream.config import ServerConfig
from facestream.stream.serve.server import StreamServer
from tests.conftest import ROOT

N = 200


def publish_events(reg: SourceRegistry) -> LivePublisher:
    publisher = LivePublisher(reg.client, ServerConfig(), fencing=True).start()
    epoch = reg.claim("door", "w1", 30)
    publisher.hold("door", Held("w1", epoch, time.monotonic() + 30))
    for k in range(N):
        publisher.publish({"type": "frame", "source": "door", "frame": k}, "door")
        publisher.publish({"type": "track_ended", "source": "door", "track_id": k, "person": f"p-{k % 7}"}, "door")
    publisher.publish({"type": "attendance", "record": {"person_id": "p-lin"}})  # for everyone, durable too
    deadline = time.time() + 20
    while reg.client.xlen(EVENTS) < N + 1 and time.time() < deadline:
        time.sleep(0.05)
    return publisher


def drain(consumer: EventConsumer, ack: bool = True, limit: int = 10_000) -> list[tuple[str, dict]]:
    got: list[tuple[str, dict]] = []
    while len(got) < limit:
        batch = consumer.read(count=min(50, limit - len(got)), block_ms=200)
        if not batch:
            break
        got += batch
        if ack:
            consumer.ack(*(i for i, _ in batch))
    return got


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_every_event_reaches_each_group_at_least_once_across_a_freeze_and_a_kill(redis_url):
    reg = SourceRegistry(redis_url)
    r = reg.client
    # groups created before the events, as an integration that is already running
    frozen = EventConsumer(r, "doors", "a", claim_idle_s=0.5)
    healthy = EventConsumer(r, "doors", "b", claim_idle_s=0.5)
    killed = EventConsumer(r, "audit", "c")
    publisher = publish_events(reg)
    assert r.xlen(EVENTS) == N + 1 and r.xlen(STREAM) == N + 1  # no frames on the events stream
    assert r.xlen(frame_stream("door")) == N  # frames on their source's own stream

    held_by_frozen = frozen.read(count=50)  # then it freezes: never acknowledges
    assert len(held_by_frozen) == 50
    got_b = drain(healthy)
    time.sleep(0.6)  # the frozen consumer's events have been idle long enough
    got_b += drain(healthy)
    ids = {i for i, _ in held_by_frozen} | {i for i, _ in got_b}
    assert len(ids) == N + 1 and {i for i, _ in held_by_frozen} <= {i for i, _ in got_b}  # taken over

    first = killed.read(count=100)  # handled 60 of them, then killed before acknowledging the rest
    killed.ack(*(i for i, _ in first[:60]))
    restarted = EventConsumer(redis.Redis.from_url(redis_url), "audit", "c")
    again = drain(restarted)
    assert [i for i, _ in again[:40]] == [i for i, _ in first[60:]]  # its own pending first, in order
    assert {i for i, _ in first[:60]} | {i for i, _ in again} == ids
    assert all(m["type"] != "frame" for _, m in again) and again[-1][1]["type"] == "attendance"
    assert all(m.get("epoch") == 1 and m.get("worker") == "w1" for _, m in again if m["type"] == "track_ended")
    assert r.xpending(EVENTS, "audit")["pending"] == 0

    # an erasure rewrites the stream without the person and keeps each group where it was
    late = EventConsumer(r, "late", "d", start="0")
    store = open_attendance_store(redis_url)
    store.forget_person("p-3")
    store.close()
    assert all("p-3" not in f[b"m"].decode() for _, f in r.xrange(EVENTS))
    assert {g["name"].decode() for g in r.xinfo_groups(EVENTS)} == {"doors", "audit", "late"}
    assert drain(restarted) == []  # nothing replayed to a group that had everything
    rest = drain(late)
    assert len(rest) == N + 1 - sum(1 for k in range(N) if k % 7 == 3)
    publisher.stop()
    reg.close()


def test_gateways_count_the_messages_they_missed(redis_url):
    reg = SourceRegistry(redis_url)
    server = StreamServer(ServerConfig(port=0), static_dir=None)
    reader = LiveReader(reg.client, server)
    for seq in (1, 2, 5, 6):  # 3 and 4 trimmed away, or lost while this gateway was behind
        text = json.dumps({"type": "frame", "source": "door", "epoch": 1, "seq": seq})
        reader._deliver({b"s": b"door", b"m": text.encode()}, 0.0)
    reader._deliver({b"s": b"door", b"m": b'{"type": "frame", "epoch": 2, "seq": 1}'}, 0.0)  # a new holder
    assert reader.stats()["gaps"] == 2
    reg.close()


def test_the_events_command_prints_each_event_and_acknowledges_it(redis_url):
    reg = SourceRegistry(redis_url)
    publisher = publish_events(reg)
    cmd = [sys.executable, "-m", "facestream", "events", "--group", "sheet", "--from-start", "--count", "120",
           "--gallery", redis_url]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 120 and lines[0]["type"] == "track_ended" and lines[0]["track_id"] == 0
    out = subprocess.run(cmd[:-4] + ["--count", "81", "--gallery", redis_url], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)  # the same group resumes where it stopped
    rest = [json.loads(line) for line in out.stdout.splitlines()]
    assert rest[0]["track_id"] == 120 and rest[-1]["type"] == "attendance" and len(rest) == 81
    publisher.stop()
    reg.close()
