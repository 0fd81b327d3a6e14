"""Scaling out: the Redis hop's latency, one gateway's fan-out, and failover time.

    .venv/bin/python bench/scale.py                       # everything (about 8 minutes on 2 cores)
    .venv/bin/python bench/scale.py --workers 1 --kills 3 --seconds 5

1. **Latency of the Redis hop.** The 640x360 Hamilton clip, read at its native rate and
   looping, one copy per worker (1, 2, 4 workers). Latency is frame read (the message's
   ``time``, taken by the reader thread) to the moment a websocket client has the message,
   for ``facestream run`` (in-process) and for workers -> Redis stream -> gateway -> client.
2. **Fan-out.** A gateway alone; this script writes synthetic frame messages (~0.6 KB, as a
   frame with two faces) into the live stream at a fixed rate, and 50 or 200 real websocket
   clients (in a separate process) count what they receive: messages per second delivered.
3. **Failover.** Two workers, one source; the holder is killed (SIGKILL) ``--kills`` times (a
   fresh worker is started after each); the time from the kill to the lease's new holder, and
   to the first new frame at a client on the gateway.

Every process is a real ``facestream`` command; Redis is a throwaway ``redis-server``.
Results: ``bench/results/scale-<machine>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_info, percentile, redis_server, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACESTREAM_TEST_DATA", ROOT.parent / "shared" / "data" / "faces"))
CLIP = DATA / "face_recognition_examples" / "_nonsingle" / "_video" / "short_hamilton_clip.mp4"
TRUST_CLIP = ["--set", f"cluster.source_folders=[{CLIP.parent}]"]  # workers open Redis-declared files only from here
PEOPLE = ROOT / "examples" / "people"
TOKEN = "bench-scale-token-0123456789"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="1,2,4", help="comma list: workers (one clip each) for the latency part")
    p.add_argument("--clients", default="50,200", help="comma list: websocket clients for the fan-out part")
    p.add_argument("--rates", default="300,1000", help="comma list: messages per second offered in the fan-out part")
    p.add_argument("--kills", type=int, default=10, help="failovers measured")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per configuration")
    p.add_argument("--warmup", type=float, default=4.0, help="seconds of frames before measuring")
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    p.add_argument("--client-process", nargs=3, metavar=("URL", "N", "SECONDS"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- websocket clients in their own process ---------------------------------------------------------------
async def _clients(url: str, n: int, seconds: float) -> dict:
    from websockets.asyncio.client import connect

    conns = [await connect(url, max_size=2**24, additional_headers={"Authorization": f"Bearer {TOKEN}"})
             for _ in range(n)]
    for ws in conns:
        await ws.recv()  # hello
    print("READY", flush=True)
    counts = [0] * n
    latency: list[float] = []
    frames: list[tuple[float, str]] = []  # (receive time, source) of client 0's frames

    async def drain(i: int, ws) -> None:
        async for raw in ws:
            counts[i] += 1
            if i == 0:
                now = time.time()
                msg = json.loads(raw)
                if msg.get("type") == "frame":
                    latency.append((now - msg["time"]) * 1000)
                    frames.append((now, msg["source"]))

    tasks = [asyncio.create_task(drain(i, ws)) for i, ws in enumerate(conns)]
    await asyncio.sleep(seconds)
    for t in tasks:
        t.cancel()
    for ws in conns:
        await ws.close()
    return {"counts": counts, "latency_ms": latency, "frames": frames}


class Clients:
    """N websocket clients in a child process for ``seconds``; ``result()`` is what they received."""

    def __init__(self, url: str, n: int, seconds: float):
        self.proc = subprocess.Popen([sys.executable, __file__, "--client-process", url, str(n), str(seconds)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "READY":
            self.proc.kill()
            raise RuntimeError("websocket clients did not connect")

    def result(self) -> dict:
        out, _ = self.proc.communicate(timeout=600)
        return json.loads(out.strip().splitlines()[-1])


# -- facestream processes -----------------------------------------------------------------------------------
def facestream(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "facestream", *args], cwd=ROOT, stdout=fh,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(fn, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def http_ok(port: int) -> bool:
    import urllib.request

    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
        return True
    except OSError:
        return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def enrol(url: str, log: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "facestream", "enroll", str(PEOPLE), "--gallery", url], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    log.write_text(out.stdout)


def summary(latency: list[float], frames: list, seconds: float) -> dict:
    sources = sorted({s for _, s in frames})
    return {"latency_ms_p50": percentile(latency, 50), "latency_ms_p99": percentile(latency, 99),
            "frames_at_client": len(frames), "fps_per_source": round(len(frames) / max(1, len(sources)) / seconds, 1),
            "sources": sources}


# -- 1. latency: in-process against the Redis hop ---------------------------------------------------------------
def latency_in_process(n: int, args, work: Path) -> dict:
    url = f"sqlite:///{work / 'inproc.db'}"
    enrol(url, work / "enrol-inproc.log")
    port = free_port()
    run = facestream(["run", *[str(CLIP)] * n, "--realtime", "--loop", "--no-attendance", "--gallery", url,
                      "--port", str(port), "--token", TOKEN], work / f"run-{n}.log")
    try:
        wait_for(lambda: http_ok(port), 120, "facestream run")
        time.sleep(args.warmup)
        res = Clients(f"ws://127.0.0.1:{port}/", 1, args.seconds).result()
    finally:
        stop(run)
    return summary(res["latency_ms"], res["frames"], args.seconds)


def latency_cluster(n: int, redis_url: str, args, work: Path) -> dict:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    enrol(redis_url, work / "enrol-redis.log")
    for i in range(n):
        subprocess.run([sys.executable, "-m", "facestream", "sources", "add", str(CLIP), "--id", f"clip{i}",
                        "--realtime", "--loop", "--gallery", redis_url], cwd=ROOT, check=True, capture_output=True)
    port = free_port()
    procs = [facestream(["gateway", "--port", str(port), "--token", TOKEN, "--gallery", redis_url],
                        work / f"gateway-{n}.log")]
    procs += [facestream(["worker", "--capacity", "1", "--no-attendance", *TRUST_CLIP, "--gallery", redis_url],
                         work / f"worker-{n}-{i}.log") for i in range(n)]
    try:
        r = redis.Redis.from_url(redis_url)
        wait_for(lambda: http_ok(port) and all(r.get(f"facestream:lease:clip{i}") for i in range(n)), 180,
                 "workers and gateway")
        time.sleep(args.warmup)
        res = Clients(f"ws://127.0.0.1:{port}/", 1, args.seconds).result()
    finally:
        for p in procs:
            stop(p)
    return summary(res["latency_ms"], res["frames"], args.seconds)


# -- 2. fan-out: one gateway, N clients ---------------------------------------------------------------------------
def fan_out(redis_url: str, clients: int, rate: int, args, work: Path) -> dict:
    import redis

    from facestream.stream.cluster.bus import STREAM

    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    port = free_port()
    gw = facestream(["gateway", "--port", str(port), "--token", TOKEN, "--gallery", redis_url,
                     "--set", "server.client_queue=256"], work / f"fanout-{clients}.log")
    try:
        wait_for(lambda: http_ok(port), 120, "gateway")
        face = {"box": [201.5, 79.2, 288.0, 164.7], "score": 0.93, "track_id": 2, "name": "Lin-Manuel Miranda",
                "person_id": "3f2c9a51d0e4", "similarity": 0.95, "age_frames": 86, "age_s": 2.87, "votes": 7,
                "embedded": False}
        clients_proc = Clients(f"ws://127.0.0.1:{port}/", clients, args.seconds + 2)
        sent = 0
        stop_at = time.time() + args.seconds
        period = 0.02  # batches of rate/50 messages every 20 ms
        pipe_n = max(1, int(rate * period))
        while time.time() < stop_at:
            t0 = time.time()
            pipe = r.pipeline(transaction=False)
            for _ in range(pipe_n):
                msg = {"type": "frame", "source": f"cam{sent % 10}", "frame": sent, "time": time.time(),
                       "width": 640, "height": 360, "faces": [face, face],
                       "timings_ms": {"decode": 0.4, "detect": 9.8, "track": 0.1, "total": 12.3}}
                pipe.xadd(STREAM, {"s": msg["source"], "m": json.dumps(msg, separators=(",", ":"))}, maxlen=5000,
                          approximate=True)
                sent += 1
            pipe.execute()
            time.sleep(max(0.0, period - (time.time() - t0)))
        res = clients_proc.result()
    finally:
        stop(gw)
    counts = res["counts"]
    delivered = sum(counts)
    return {"clients": clients, "offered_per_s": rate, "published": sent,
            "delivered_per_s": round(delivered / args.seconds, 1),
            "per_client_min": min(counts), "per_client_median": percentile(counts, 50),
            "share_delivered": round(delivered / (sent * clients), 4) if sent else None,
            "latency_ms_p50": percentile(res["latency_ms"], 50), "latency_ms_p99": percentile(res["latency_ms"], 99)}


# -- 3. failover -----------------------------------------------------------------------------------------------
def failover(redis_url: str, kills: int, work: Path) -> dict:
    import redis

    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    enrol(redis_url, work / "enrol-failover.log")
    subprocess.run([sys.executable, "-m", "facestream", "sources", "add", str(CLIP), "--id", "door", "--realtime",
                    "--loop", "--gallery", redis_url], cwd=ROOT, check=True, capture_output=True)
    port = free_port()
    gw = facestream(["gateway", "--port", str(port), "--token", TOKEN, "--gallery", redis_url], work / "fo-gw.log")
    workers = {}
    for i in range(2):
        p = facestream(["worker", "--capacity", "1", "--no-attendance", *TRUST_CLIP, "--gallery", redis_url],
                       work / f"fo-w{i}.log")
        workers[p.pid] = p
    frames: list[float] = []
    stop_listen = threading.Event()

    async def listen() -> None:
        from websockets.asyncio.client import connect

        async with connect(f"ws://127.0.0.1:{port}/", additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            while not stop_listen.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                msg = json.loads(raw)
                if msg.get("type") == "frame":
                    frames.append(msg["time"])

    def holder() -> str | None:
        v = r.get("facestream:lease:door")
        return v.decode() if v else None

    lease_s, frame_s = [], []
    try:
        wait_for(lambda: http_ok(port) and holder() is not None, 180, "gateway and a worker holding the source")
        listener = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
        listener.start()
        wait_for(lambda: len(frames) > 10, 60, "frames at the client")
        for k in range(kills):
            wait_for(lambda: r.hlen("facestream:workers") >= 2, 120, "two workers up")
            h = holder()
            pid = next(p for p in workers if h and f"-{p}-" in h)
            t0 = time.time()
            workers.pop(pid).kill()
            wait_for(lambda h=h: holder() not in (None, h), 60, "the new holder")
            lease_s.append(round(time.time() - t0, 2))
            wait_for(lambda t0=t0: any(t > t0 for t in frames[-50:]), 60, "a new frame")
            frame_s.append(round(next(t for t in frames if t > t0) - t0, 2))
            p = facestream(["worker", "--capacity", "1", "--no-attendance", *TRUST_CLIP, "--gallery", redis_url],
                           work / f"fo-w{k + 2}.log")
            workers[p.pid] = p
            print(f"failover {k + 1}/{kills}: lease moved in {lease_s[-1]} s, frames again after {frame_s[-1]} s",
                  flush=True)
    finally:
        stop_listen.set()
        for p in workers.values():
            stop(p)
        stop(gw)
    return {"kills": len(lease_s), "lease_moved_s": lease_s, "first_frame_s": frame_s,
            "lease_moved_s_p50": percentile(lease_s, 50), "lease_moved_s_max": max(lease_s, default=None),
            "first_frame_s_p50": percentile(frame_s, 50), "first_frame_s_max": max(frame_s, default=None)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client_process:
        url, n, seconds = args.client_process
        print(json.dumps(asyncio.run(_clients(url, int(n), float(seconds)))), flush=True)
        return 0
    info = machine_info()
    result: dict = {"clip": CLIP.name, "seconds": args.seconds, "latency": [], "fan_out": [], "failover": None}
    with tempfile.TemporaryDirectory() as tmp, redis_server() as redis_url:
        work = Path(tmp)
        for n in [int(x) for x in args.workers.split(",") if x]:
            inproc = latency_in_process(n, args, work)
            cluster = latency_cluster(n, redis_url, args, work)
            row = {"workers": n, "in_process": inproc, "redis": cluster,
                   "hop_added_ms_p50": round(cluster["latency_ms_p50"] - inproc["latency_ms_p50"], 1)}
            result["latency"].append(row)
            print(json.dumps(row), flush=True)
        for clients in [int(x) for x in args.clients.split(",") if x]:
            for rate in [int(x) for x in args.rates.split(",") if x]:
                row = fan_out(redis_url, clients, rate, args, work)
                result["fan_out"].append(row)
                print(json.dumps(row), flush=True)
        if args.kills:
            result["failover"] = failover(redis_url, args.kills, work)
    result["machine"] = info
    write_result("scale", result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
