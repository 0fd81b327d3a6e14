"""The benchmarks' shared helpers: the throwaway Redis server and the timing summary."""

from __future__ import annotations

import socket

import redis

from bench.common import redis_server, summarize, time_calls


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_redis_server_answers_inside_and_is_gone_after():
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        assert client.ping()
        port = client.connection_pool.connection_kwargs["port"]
        client.close()
    assert not _answers(port)


def test_time_calls_counts_repeats_after_warmup():
    calls = []
    times = time_calls(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(times) == 4 and len(calls) == 6
    assert summarize(times)["n"] == 4
