"""A Redis with a password (issue 21, item 5: the compose Redis had none): every part of the cluster works
with ``redis://:PASSWORD@host``, and a wrong password is one clear error that never shows it."""

from __future__ import annotations

import pytest

from facestream.errors import FacestreamError
from facestream.gallery import open_store
from facestream.stream.attendance import open_attendance_store
from facestream.stream.cluster.registry import SourceRegistry
from tests.conftest import RedisServer
from tests.stream.cluster.redis_roundtrip import cluster_round_trip

PASSWORD = "c0rrect-horse-battery-staple-9f2e"


def test_the_cluster_runs_on_a_redis_with_a_password_and_a_wrong_one_is_a_clear_error(tmp_path):
    server = RedisServer(tmp_path, password=PASSWORD)
    server.start()
    try:
        cluster_round_trip(server.url, track_id=1).close()

        wrong = server.url.replace(PASSWORD, "not-the-password")
        for open_it in (lambda: SourceRegistry(wrong).sources(), lambda: open_store(wrong),
                        lambda: open_attendance_store(wrong)):
            with pytest.raises(FacestreamError) as err:
                open_it()
            assert "not-the-password" not in str(err.value) and PASSWORD not in str(err.value)
    finally:
        server.stop()
