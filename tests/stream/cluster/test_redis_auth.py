"""A Redis with a password (issue 21, item 5: the compose Redis had none): every part of the cluster works
with ``redis://:PASSWORD@host``, and a wrong password is one clear error that never shows it."""

from __future__ import annotations

import time

import pytest

from facestream.errors import FacestreamError
from facestream.gallery import open_store
from facestream.stream.attendance import open_attendance_store
from facestream.stream.cluster.bus import STREAM, Held, LivePublisher
from facestream.stream.cluster.events import EVENTS, EventConsumer
from facestream.stream.cluster.registry import SourceRegistry
from facestream.stream.config import ServerConfig, SourceConfig
from tests.conftest import RedisServer

PASSWORD = "c0rrect-horse-battery-staple-9f2e"


def test_the_cluster_runs_on_a_redis_with_a_password_and_a_wrong_one_is_a_clear_error(tmp_path):
    server = RedisServer(tmp_path, password=PASSWORD)
    server.start()
    try:
        reg = SourceRegistry(server.url)
        reg.add(SourceConfig(url="rtsp://cam.example/1", id="door"))
        epoch = reg.claim("door", "w1", 10)
        consumer = EventConsumer(reg.client, "audit", "c1")
        publisher = LivePublisher(reg.client, ServerConfig(), fencing=True).start()
        publisher.hold("door", Held("w1", epoch, time.monotonic() + 10))
        publisher.publish({"type": "track_ended", "source": "door", "track_id": 1}, "door")
        deadline = time.time() + 5
        while reg.client.xlen(EVENTS) < 1 and time.time() < deadline:
            time.sleep(0.05)
        assert reg.client.xlen(STREAM) == 1 and [m["track_id"] for _, m in consumer.read()] == [1]
        publisher.stop()
        gallery = open_store(server.url)
        assert gallery.add_person("Ada").name == "Ada" and [p.name for p in gallery.list_people()] == ["Ada"]
        gallery.close()
        open_attendance_store(server.url).close()
        reg.close()

        wrong = server.url.replace(PASSWORD, "not-the-password")
        for open_it in (lambda: SourceRegistry(wrong).sources(), lambda: open_store(wrong),
                        lambda: open_attendance_store(wrong)):
            with pytest.raises(FacestreamError) as err:
                open_it()
            assert "not-the-password" not in str(err.value) and PASSWORD not in str(err.value)
    finally:
        server.stop()
