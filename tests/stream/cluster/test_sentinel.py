"""Redis Sentinel (issue 21, item 8): a real master, a replica and a sentinel on loopback. A worker on a
``redis+sentinel://`` URL keeps publishing after the master is killed and the replica promoted."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import redis

from facestream.errors import FacestreamError
from facestream.redis_url import connect
from facestream.stream.attendance.redis_backend import frame_stream
from facestream.stream.cluster.registry import SourceRegistry
from facestream.stream.config import SourceConfig
from tests.conftest import HAMILTON, RedisServer, free_port
from tests.stream.cluster.test_fencing import start_worker, stop_worker
from tests.waiting import wait_until


def start_sentinel(tmp_path, master_port: int) -> int:
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndaemonize yes\npidfile {tmp_path}/sentinel.pid\n"
                    f"dir {tmp_path}\nsentinel monitor facestream 127.0.0.1 {master_port} 1\n"
                    "sentinel down-after-milliseconds facestream 1000\nsentinel failover-timeout facestream 5000\n")
    subprocess.run(["redis-server", str(conf), "--sentinel"], check=True)
    return port


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_worker_on_sentinel_keeps_publishing_after_the_master_dies(tmp_path, analyzer):
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    (tmp_path / "s").mkdir()
    master = RedisServer(tmp_path / "m")
    master.start()
    replica = RedisServer(tmp_path / "r", extra=["--replicaof", "127.0.0.1", str(master.port)])
    replica.start()
    sentinel_port = start_sentinel(tmp_path / "s", master.port)
    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/facestream/0"
    w = None
    try:
        wait_until(lambda: redis.Redis(port=replica.port).info("replication").get("master_link_status") == "up", 20,
                 "the replica to sync")
        SourceRegistry(url).add(SourceConfig(url=str(HAMILTON), id="door", loop=True, realtime=True))
        w = start_worker(url, analyzer, "w-ha")
        wait_until(lambda: redis.Redis(port=master.port).xlen(frame_stream("door")) > 10, 60, "frames on the master")
        master.stop()  # the master dies; the sentinel promotes the replica
        killed = time.monotonic()
        promoted = redis.Redis(port=replica.port)

        def frames_on_replica() -> bool:
            try:
                if promoted.info("replication")["role"] != "master":
                    return False
                last = promoted.xrevrange(frame_stream("door"), count=1)
                return bool(last) and json.loads(last[0][1][b"m"]).get("worker") == "w-ha" and \
                    int(last[0][0].split(b"-")[0]) / 1000 > time.time() - 1
            except redis.RedisError:
                return False

        wait_until(frames_on_replica, 30, "frames on the promoted replica")
        took = time.monotonic() - killed
        print(f"frames flow again {took:.1f} s after the master died")
        assert took < 10.0
    finally:
        stop_worker(w)
        subprocess.run(["redis-cli", "-p", str(sentinel_port), "shutdown", "nosave"], capture_output=True)
        replica.stop()
        master.stop()


def test_a_sentinel_url_without_a_service_is_a_clear_error():
    with pytest.raises(FacestreamError, match="needs sentinels and a service name"):
        connect("redis+sentinel://127.0.0.1:26379")
    client = connect("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2/door-cluster/3", socket_timeout=1)
    pool = client.connection_pool
    assert pool.service_name == "door-cluster" and pool.connection_kwargs["db"] == 3
    assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels] == [26379, 26379]
