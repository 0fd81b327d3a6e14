"""The websocket/HTTP server with real websocket clients over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from facestream.stream.config import ServerConfig
from facestream.stream.engine.faces import Faces, FrameResult
from facestream.stream.serve.server import StreamServer


def frame_message(source: str, index: int, pad: int = 0) -> dict:
    faces = Faces(xyxy=[[10, 20, 110, 140]], score=[0.9], track_id=np.array([7]), name=["Ada"],
                  identity=["p1"], similarity=np.array([0.95], np.float32))
    msg = FrameResult(source, index, time.time(), faces, {"total": 1.0}, 640, 360).to_json()
    if pad:
        msg["pad"] = "x" * pad
    return msg


@pytest.fixture
def server(tmp_path):
    (tmp_path / "index.html").write_text("<h1>dash</h1>")
    srv = StreamServer(ServerConfig(port=0, client_queue=8, jpeg_fps=60),
                       stats=lambda: {"sources": {"cam0": {}, "cam1": {}}}, static_dir=tmp_path).start()
    yield srv
    srv.stop()


def http_get(url: str, headers: dict | None = None) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def test_http_endpoints(server):
    base = f"http://127.0.0.1:{server.port}"
    status, body, _ = http_get(base + "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body, ctype = http_get(base + "/stats")
    assert status == 200 and ctype == "application/json"
    stats = json.loads(body)
    assert set(stats["sources"]) == {"cam0", "cam1"} and stats["server"]["clients"] == 0
    status, body, ctype = http_get(base + "/")
    assert status == 200 and body == b"<h1>dash</h1>" and ctype.startswith("text/html")
    assert http_get(base + "/../../etc/passwd")[0] == 404
    assert http_get(base + "/nope.js")[0] == 404


def test_token_auth(tmp_path):
    token = "s3cret-token-0123456789ab"
    bearer = {"Authorization": f"Bearer {token}"}
    srv = StreamServer(ServerConfig(port=0, token=token), static_dir=None).start()
    try:
        base = f"http://127.0.0.1:{srv.port}"
        assert http_get(base + "/stats")[0] == 401
        status, body, _ = http_get(base + f"/stats?token={token}")  # addresses are logged: never in one
        assert status == 401 and b"in the address is not accepted" in body
        assert http_get(base + "/stats", bearer)[0] == 200
        assert http_get(base + "/health")[0] == 200  # health checks need no token

        async def scenario():
            with pytest.raises(InvalidStatus) as err:
                async with connect(f"ws://127.0.0.1:{srv.port}/"):
                    pass
            assert err.value.response.status_code == 401
            for query in ("wrong", token):
                with pytest.raises(InvalidStatus):
                    async with connect(f"ws://127.0.0.1:{srv.port}/?token={query}"):
                        pass
            async with connect(f"ws://127.0.0.1:{srv.port}/", additional_headers=bearer) as ws:
                assert json.loads(await ws.recv())["type"] == "hello"

        asyncio.run(scenario())
        assert srv.rejected == 5  # the two /stats and the three handshakes
    finally:
        srv.stop()


async def wait_clients(server: StreamServer, n: int) -> None:
    for _ in range(500):
        if server.clients >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {server.clients} of {n} clients connected")


def test_subscriptions_and_jpeg(server):
    image = np.zeros((36, 64, 3), np.uint8)
    image[:, :32] = (0, 0, 255)

    async def scenario():
        url = f"ws://127.0.0.1:{server.port}/"
        async with connect(url + "?sources=cam1") as only1, connect(url) as every, \
                connect(url + "?frames=jpeg") as viewer:
            hello = json.loads(await only1.recv())
            assert hello["sources"] == ["cam0", "cam1"] and hello["subscribed"] == ["cam1"]
            for ws in (every, viewer):
                await ws.recv()
            await wait_clients(server, 3)
            server.publish(frame_message("cam0", 0), "cam0", image=image)
            server.publish(frame_message("cam1", 0), "cam1", image=image)
            server.publish({"type": "event", "event": "person_appeared", "source": "cam1"}, "cam1")
            got1 = [json.loads(await only1.recv()) for _ in range(2)]
            assert [(m["type"], m["source"]) for m in got1] == [("frame", "cam1"), ("event", "cam1")]
            got = [json.loads(await every.recv()) for _ in range(3)]
            assert [m["source"] for m in got] == ["cam0", "cam1", "cam1"]
            assert "jpeg" not in got[0] and got[0]["faces"][0]["name"] == "Ada"
            seen = [json.loads(await viewer.recv()) for _ in range(3)]
            jpeg = cv2.imdecode(np.frombuffer(base64.b64decode(seen[0]["jpeg"]), np.uint8), cv2.IMREAD_COLOR)
            assert jpeg.shape == image.shape and jpeg[0, 0, 2] > 200 and jpeg[0, 63, 2] < 50
            # switch the first client to cam0 by message
            await only1.send(json.dumps({"type": "subscribe", "sources": ["cam0"]}))
            assert json.loads(await only1.recv()) == {"type": "subscribed", "sources": ["cam0"], "frames": "none"}
            server.publish(frame_message("cam1", 1), "cam1")
            server.publish(frame_message("cam0", 1), "cam0")
            assert json.loads(await only1.recv())["source"] == "cam0"
            await only1.send("garbage")
            assert json.loads(await only1.recv())["type"] == "error"

    asyncio.run(scenario())


def stuck_client(port: int) -> socket.socket:
    """A live-view websocket client (JPEG frames) that completes the handshake and then never reads a byte."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(b"0123456789abcdef").decode()
    s.sendall((f"GET /?frames=jpeg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)  # byte by byte: leave everything after the headers unread
    assert head.startswith(b"HTTP/1.1 101")
    return s


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_fifty_clients_one_stuck():
    """49 readers get every message while one client never reads; its queue stays bounded.

    The stuck client asked for the JPEG live view, so its messages are big and its
    socket buffers fill quickly; the readers take the plain JSON.
    """
    queue_len = 16
    srv = StreamServer(ServerConfig(port=0, client_queue=queue_len, jpeg_fps=60), static_dir=None).start()
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    n_messages, window = 200, queue_len // 2
    received = [0] * 49
    try:
        stuck = stuck_client(srv.port)

        async def reader(i: int, ws, done: asyncio.Event) -> None:
            await ws.recv()  # hello
            expected = 0
            while expected < n_messages:
                raw = await ws.recv()
                frame = int(raw.split('"frame":', 1)[1].split(",", 1)[0])  # cheaper than parsing the padding
                assert frame == expected, f"client {i} missed a message"
                expected += 1
                received[i] = expected
            done.set()

        async def scenario():
            clients = [await connect(f"ws://127.0.0.1:{srv.port}/", max_queue=4) for _ in range(49)]
            await wait_clients(srv, 50)
            dones = [asyncio.Event() for _ in clients]
            tasks = [asyncio.create_task(reader(i, ws, d))
                     for i, (ws, d) in enumerate(zip(clients, dones, strict=True))]
            max_stuck_queue = 0
            for k in range(n_messages):
                # pace by the readers (never by the stuck client): a stuck client that
                # slowed the server would stall this loop and the test would time out
                while min(received) < k - window:
                    await asyncio.sleep(0.002)
                srv.publish(frame_message("cam0", k), "cam0", t_read=time.perf_counter(), image=noise)
                await asyncio.sleep(0.01)  # ~ a camera's pace, so JPEGs (capped at jpeg_fps) keep coming
                stuck_info = [c for c in srv.client_stats() if c["sent"] < k - 2 * window]
                max_stuck_queue = max([max_stuck_queue] + [c["queued"] for c in stuck_info])
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
            for ws in clients:
                await ws.close()
            return max_stuck_queue

        max_stuck_queue = asyncio.run(scenario())
        stats = srv.server_stats()
        stuck_stats = [c for c in stats["client_list"] if c["sent"] < n_messages]
        assert len(stuck_stats) == 1, stats["client_list"]
        assert stuck_stats[0]["max_queued"] <= queue_len and max_stuck_queue <= queue_len
        assert stuck_stats[0]["dropped"] > 0 and stuck_stats[0]["sent"] < n_messages
        assert stuck_stats[0]["sent"] + stuck_stats[0]["dropped"] + stuck_stats[0]["queued"] >= n_messages - 1
        assert received == [n_messages] * 49
        stuck.close()
    finally:
        srv.stop()


def test_port_in_use_is_a_clear_error():
    from facestream.errors import FacestreamError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(FacestreamError, match="Cannot listen"):
            StreamServer(ServerConfig(port=s.getsockname()[1]), static_dir=None).start()


def test_publish_from_many_threads(server):
    """The pipeline publishes from one thread per source; nothing is lost or interleaved."""

    async def scenario():
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.recv()
            await wait_clients(server, 1)

            def burst(src: str) -> None:
                for k in range(4):
                    server.publish(frame_message(src, k), src)

            threads = [threading.Thread(target=burst, args=(f"cam{i}",)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            got = [json.loads(await ws.recv()) for _ in range(8)]
            for src in ("cam0", "cam1"):
                assert [m["frame"] for m in got if m["source"] == src] == [0, 1, 2, 3]

    asyncio.run(scenario())


def test_pictures_only_of_the_tiles_a_dashboard_shows(server):
    """Issue 21, item 6: a dashboard asks for the JPEGs of the tiles on its screen; boxes and names of the other
    cameras still come, without pictures, and the sources nobody shows are not wanted (a gateway tells the
    workers, which then encode nothing for them)."""
    image = np.zeros((36, 64, 3), np.uint8)

    async def scenario():
        url = f"ws://127.0.0.1:{server.port}/?frames=jpeg"
        async with connect(url) as page:
            await page.recv()
            await wait_clients(server, 1)
            assert server.jpeg_watched() is None  # before it says which tiles it shows: every camera
            await page.send(json.dumps({"type": "subscribe", "jpeg_sources": ["cam1"]}))
            reply = json.loads(await page.recv())
            assert reply["jpeg_sources"] == ["cam1"] and reply["frames"] == "jpeg"
            assert server.jpeg_watched() == {"cam1"}
            assert server.wants_jpeg("cam1") and not server.wants_jpeg("cam0")
            server.publish(frame_message("cam0", 0), "cam0", image=image)
            server.publish(frame_message("cam1", 0), "cam1", image=image)
            got = [json.loads(await page.recv()) for _ in range(2)]
            assert [(m["source"], "jpeg" in m) for m in got] == [("cam0", False), ("cam1", True)]
            assert got[0]["faces"][0]["name"] == "Ada"  # names and boxes of every camera still come
            await page.send(json.dumps({"type": "subscribe", "jpeg_sources": []}))  # the page went to the background
            assert json.loads(await page.recv())["jpeg_sources"] == []
            assert server.jpeg_watched() == set() and not server.wants_jpeg("cam1")
            await page.send(json.dumps({"type": "subscribe", "jpeg_sources": "*"}))
            assert "jpeg_sources" not in json.loads(await page.recv())
            assert server.jpeg_watched() is None

    asyncio.run(scenario())


def test_enrol_track_needs_a_live_pipeline_and_a_name(server):
    async def scenario():
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "enrol_track", "id": 1, "source": "cam0", "track_id": 3, "name": "Ada"}))
            reply = json.loads(await ws.recv())
            assert reply["type"] == "enrol_reply" and reply["id"] == 1 and not reply["ok"]
            assert "no live pipeline" in reply["error"]
            await ws.send(json.dumps({"type": "enrol_track", "id": 2, "source": "cam0", "track_id": 3}))
            reply = json.loads(await ws.recv())
            assert reply["type"] == "enrol_reply" and reply["id"] == 2 and "name" in reply["error"]

    asyncio.run(scenario())


def test_an_extension_that_takes_commands_must_answer_them():
    from facestream.stream.serve.commands import Subscribe
    from facestream.stream.serve.extensions import ServerExtension

    class Mute(ServerExtension):
        commands = {"mute": Subscribe}

    with pytest.raises(TypeError, match="Mute declares websocket commands but does not answer them"):
        StreamServer(ServerConfig(port=0), extensions=[Mute()])
