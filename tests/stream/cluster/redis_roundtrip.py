"""Every part of the cluster once over one Redis URL: the password and TLS tests share it."""

from __future__ import annotations

import time

from facestream.gallery import open_store
from facestream.stream.attendance import open_attendance_store
from facestream.stream.cluster.bus import STREAM, Held, LivePublisher
from facestream.stream.cluster.events import EVENTS, EventConsumer
from facestream.stream.cluster.registry import SourceRegistry
from facestream.stream.config import ServerConfig, SourceConfig


def cluster_round_trip(url: str, track_id: int) -> SourceRegistry:
    """A source declared and claimed, a fenced message published and read through a consumer group, a
    person enrolled and the attendance store opened, all over ``url``. Returns the registry (open), so a
    caller can look at its connection."""
    reg = SourceRegistry(url)
    reg.add(SourceConfig(url="rtsp://cam.example/1", id="door"))
    epoch = reg.claim("door", "w1", 10)
    assert epoch and reg.holders() == {"door": "w1"}
    consumer = EventConsumer(reg.client, "audit", "c1")
    publisher = LivePublisher(reg.client, ServerConfig(), fencing=True).start()
    publisher.hold("door", Held("w1", epoch, time.monotonic() + 10))
    publisher.publish({"type": "track_ended", "source": "door", "track_id": track_id}, "door")
    deadline = time.time() + 5
    while reg.client.xlen(EVENTS) < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert reg.client.xlen(STREAM) == 1 and [m["track_id"] for _, m in consumer.read()] == [track_id]
    publisher.stop()
    gallery = open_store(url)
    assert gallery.add_person("Ada").name == "Ada" and [p.name for p in gallery.list_people()] == ["Ada"]
    gallery.close()
    open_attendance_store(url).close()
    return reg
