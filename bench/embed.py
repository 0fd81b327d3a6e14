"""Embedding throughput and latency per engine and batch size.

    .venv/bin/python bench/embed.py                       # every engine that loads here
    .venv/bin/python bench/embed.py --engines onnxruntime --batches 1,32 --repeats 30
    .venv/bin/python bench/embed.py --device cuda         # GPU: adds batch 1024

For each engine and batch size it reports the median milliseconds per ``embed``
call (warm-up calls excluded; pre-processing and the host<->device copies
included, since a caller pays for them) and faces/s = batch / median. Results
are written to ``bench/results/embed-<machine>.json`` (see bench/common.py).
Chips are fixed pseudo-random pixels: the network's cost does not depend on
what the face looks like.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_info, summarize, time_calls, write_result  # noqa: E402

log = logging.getLogger("bench.embed")

ENGINES = ("tensorrt", "torch", "onnxruntime")
CPU_BATCHES = (1, 8, 32, 64, 256)
GPU_BATCHES = (*CPU_BATCHES, 1024)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", default=",".join(ENGINES), help="comma list of tensorrt, torch, onnxruntime")
    p.add_argument("--batches", default=None, help="comma list of batch sizes (default 1,8,32,64,256 (+1024 on GPU))")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per batch size (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per batch size before timing")
    p.add_argument("--min-seconds", type=float, default=1.0, help="keep timing small batches until this much time")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.add_argument("--no-fp16", action="store_true", help="float32 on GPU engines")
    p.add_argument("--model", default="dlib-resnet-v1", help="model name, directory or MLflow URI")
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    p.add_argument("--name", default="embed", help="result file prefix")
    return p.parse_args(argv)


def bench_engine(embedder, batches: list[int], repeats: int, warmup: int, min_seconds: float) -> list[dict]:
    """Time ``embedder.embed`` at each batch size; one row per size."""
    rng = np.random.default_rng(0)
    s = embedder.input_size
    rows = []
    for b in batches:
        chips = rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8)
        for _ in range(warmup):
            embedder.run(chips)
        cpu0 = time.process_time()
        times = time_calls(lambda c=chips: embedder.run(c), repeats, warmup=0, min_seconds=min_seconds)
        cpu_s = time.process_time() - cpu0
        stats = summarize(times)
        row = {
            "engine": embedder.name,
            "batch": b,
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()},
            "faces_per_s": round(b / (stats["median_ms"] / 1000.0), 1),
            "ms_per_face": round(stats["median_ms"] / b, 4),
            # CPU time this process used per face: less sensitive to a busy shared machine than wall time
            "cpu_ms_per_face": round(cpu_s * 1000.0 / (b * stats["n"]), 4),
        }
        log.info("%-36s batch %5d: %9.3f ms  %9.1f faces/s  %7.3f CPU ms/face (%d runs)",
                 embedder.name, b, stats["median_ms"], row["faces_per_s"], row["cpu_ms_per_face"], stats["n"])
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    from facestream.errors import FacestreamError
    from facestream.stream.config import EmbedderConfig
    from facestream.stream.engine.model_store import get_model
    from facestream.stream.engine.runtimes import create_runtime
    from facestream.stream.engine.runtimes.torchrt import cuda_available

    info = machine_info()
    on_gpu = args.device == "cuda" or (args.device == "auto" and cuda_available()[0])
    if args.batches:
        batches = sorted({int(b) for b in args.batches.split(",") if b.strip()})
    else:
        batches = list(GPU_BATCHES if on_gpu else CPU_BATCHES)
    spec = get_model(args.model)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        raise SystemExit(f"unknown engine(s) {unknown}; choose from {', '.join(ENGINES)}")
    results: list[dict] = []
    skipped: dict[str, str] = {}
    for engine in engines:
        cfg = EmbedderConfig(engine=engine, device=args.device, max_batch=max(batches), threads=args.threads,
                             fp16=not args.no_fp16, model=args.model)
        try:
            embedder = create_runtime(spec, cfg)
        except FacestreamError as exc:
            log.warning("skipping %s: %s", engine, exc)
            skipped[engine] = str(exc)
            continue
        with embedder:
            embedder.warmup()
            results.extend(bench_engine(embedder, batches, args.repeats, args.warmup, args.min_seconds))
    payload = {
        "model": spec.model_id,
        "device": args.device,
        "batches": batches,
        "repeats": args.repeats,
        "threads": args.threads,
        "results": results,
        "skipped": skipped,
        "machine": info,
    }
    write_result(args.name, payload, out_dir=args.out)
    print(f"\n{'engine':<36} {'batch':>6} {'median ms':>10} {'faces/s':>10} {'CPU ms/face':>12}")
    for r in results:
        print(f"{r['engine']:<36} {r['batch']:>6} {r['median_ms']:>10.3f} {r['faces_per_s']:>10.1f}"
              f" {r['cpu_ms_per_face']:>12.3f}")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
