"""A gateway on a Redis that stops answering (issue 21, item 3): /health stays fast while a dashboard's
hello waits on Redis off the event loop, and a dead stream reader makes /health fail instead of lying."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import httpx
import pytest

from facestream.stream.app import App
from facestream.stream.config import load_config
from facestream.stream.live.pipeline import percentile
from tests.conftest import RedisServer

TOKEN = "stall-token-0123456789abc"


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the reader killed on purpose
def test_health_stays_fast_while_redis_stalls_and_fails_when_the_reader_dies(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    pid = server.pid()
    config = load_config(overrides=[f"gallery.url={server.url}", "server.port=0", f"server.token={TOKEN}"], env={})
    app = App(config)
    gw = app.gateway().start()
    http = httpx.Client(base_url=f"http://127.0.0.1:{gw.server.port}", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=30)
    hello: list[str] = []

    async def dashboard() -> None:
        from websockets.asyncio.client import connect

        async with connect(f"ws://127.0.0.1:{gw.server.port}/",
                           additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            hello.append(await asyncio.wait_for(ws.recv(), 60))

    try:
        assert http.get("/health").json()["status"] == "ok"
        metrics = http.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "facestream_reader_up 1.0" in metrics.text
        assert "facestream_reader_messages_received_total" in metrics.text
        assert httpx.get(f"http://127.0.0.1:{gw.server.port}/metrics").status_code == 401  # behind the token
        os.kill(pid, signal.SIGSTOP)
        viewer = threading.Thread(target=lambda: asyncio.run(dashboard()), daemon=True)
        viewer.start()  # its hello reads attendance from Redis: it waits, the server does not
        took = []
        for _ in range(40):
            t0 = time.perf_counter()
            assert http.get("/health").status_code == 200
            took.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.05)
        assert not hello  # still waiting on Redis
        os.kill(pid, signal.SIGCONT)
        viewer.join(60)
        assert hello and '"hello"' in hello[0]
        assert percentile(took, 99) < 100, f"/health p99 {percentile(took, 99):.0f} ms while Redis stalled"

        def die(*_a, **_k):
            raise SystemExit  # what a bug in the reader would do to its thread
        gw.reader.client.xread = die
        deadline = time.time() + 10
        while gw.reader._thread.is_alive() and time.time() < deadline:
            time.sleep(0.1)
        r = http.get("/health")
        assert r.status_code == 503 and "reader has stopped" in r.json()["problems"][0]
        assert "facestream_reader_up 0.0" in http.get("/metrics").text
    finally:
        os.kill(pid, signal.SIGCONT)
        http.close()
        app.close()
        server.stop()
