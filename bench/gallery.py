"""Gallery search and load speed: top-5 latency for 10k/100k/1M people, load time from SQLite and Redis.

    .venv/bin/python bench/gallery.py                        # 10k, 100k, 1M; numpy (+ torch on a GPU)
    .venv/bin/python bench/gallery.py --only search         # -> gallery-search-<machine>.json
    .venv/bin/python bench/gallery.py --only load --store-size 100000

Vectors are synthetic: 128-d standard normal, L2-normalised, one per person (the
scan cost does not depend on what the faces look like). For each size it reports
the median latency of ``Matcher.search`` for one query and for a batch of 64
(top-5 people each), the scan rate in GB/s (matrix bytes / single-query time),
and, for the largest size, how long the matcher takes to load every embedding
from SQLite and from Redis (a throwaway redis-server on a free port). Results go
to ``bench/results/gallery-<machine>.json`` (see bench/common.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_info, redis_server, summarize, time_calls, write_result  # noqa: E402
from facestream.gallery import open_store  # noqa: E402
from facestream.gallery.matcher import Matcher, _cuda_available  # noqa: E402
from facestream.gallery.store import GalleryMatrix, GalleryStore  # noqa: E402
from facestream.gallery.types import NewEmbedding, Person  # noqa: E402

log = logging.getLogger("bench.gallery")
DIM = 128
MODEL = "bench-model"


class FixedStore(GalleryStore):
    """A store that only serves one prepared matrix: search timings without any database in the way."""

    url = "memory://bench"

    def __init__(self, matrix: np.ndarray):
        self.data = GalleryMatrix(1, [f"p{i}" for i in range(len(matrix))], [f"P{i}" for i in range(len(matrix))],
                                  matrix, np.arange(len(matrix), dtype=np.int32))

    def version(self) -> int:
        return 1

    def load_matrix(self, model_id: str) -> GalleryMatrix:
        return self.data

    def model_counts(self) -> dict[str, int]:
        return {MODEL: len(self.data.matrix)}

    def _unused(self, *a, **k):
        raise NotImplementedError

    find_person = list_people = enroll = rename_person = set_metadata = delete_person = _unused
    owner_of = embeddings_of = iter_chips = delete_model = export_people = clear = _unused
    remove_embedding = add_negative = remove_negative = negatives_of = get_setting = set_setting = _unused


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):  # in chunks: float64 normals for 1M rows would need 1 GB
        v = rng.standard_normal((min(100_000, n - start), DIM), dtype=np.float32)
        out[start:start + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def bench_search(matrix: np.ndarray, device: str, repeats: int) -> dict:
    queries = vectors(64, seed=1)
    with Matcher(FixedStore(matrix), MODEL, threshold=0.5, device=device, watch=False) as m:
        single = summarize(time_calls(lambda: m.search(queries[:1], top_k=5), repeats, warmup=2))
        batch = summarize(time_calls(lambda: m.search(queries, top_k=5), max(3, repeats // 4), warmup=1))
    gbs = matrix.nbytes / 1e9 / (single["median_ms"] / 1000)
    return {"single_query": single, "batch_64": batch, "scan_gb_per_s": round(gbs, 2),
            "batch_over_single": round(batch["median_ms"] / single["median_ms"], 2)}


def people(matrix: np.ndarray):
    for i, v in enumerate(matrix):
        yield Person(f"p{i}", f"P{i}"), [NewEmbedding(v, MODEL, f"h{i}")]


def bench_store(url: str, matrix: np.ndarray) -> dict:
    store = open_store(url)
    store.clear()
    t0 = time.perf_counter()
    store.import_people(people(matrix), batch=10_000)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with Matcher(store, MODEL, threshold=0.5, device="cpu", watch=False) as m:
        load_s = time.perf_counter() - t0
        assert m.rows == len(matrix)
    store.clear()
    store.close()
    return {"people": len(matrix), "bulk_import_s": round(write_s, 2), "matcher_load_s": round(load_s, 2),
            "load_mb_per_s": round(matrix.nbytes / 1e6 / load_s, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="comma list of gallery sizes (people)")
    p.add_argument("--repeats", type=int, default=20, help="timed single queries per size (median reported)")
    p.add_argument("--only", choices=["search", "load"], help="run one part (saved as gallery-<part>-<machine>.json)")
    p.add_argument("--store-size", type=int, default=None, help="people for the load timings (default: largest)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    info = machine_info()  # before the run, so its load average is the machine's, not the benchmark's
    sizes = [int(s) for s in args.sizes.split(",")]
    devices = ["cpu"] + (["cuda"] if _cuda_available() else [])
    results: dict = {"dim": DIM, "top_k": 5, "search": {}, "load": {}}
    for n in sizes if args.only != "load" else []:
        matrix = vectors(n)
        for device in devices:
            r = bench_search(matrix, device, args.repeats)
            results["search"][f"{device}/{n}"] = r
            log.info("%s %8d people: single %.1f ms, batch64 %.1f ms (x%.1f), %.1f GB/s", device, n,
                     r["single_query"]["median_ms"], r["batch_64"]["median_ms"], r["batch_over_single"],
                     r["scan_gb_per_s"])
    if args.only != "search":
        n = args.store_size or max(sizes)
        matrix = vectors(n)
        with tempfile.TemporaryDirectory() as tmp:
            results["load"]["sqlite"] = bench_store(f"sqlite://{tmp}/bench.db", matrix)
            log.info("sqlite: %s", results["load"]["sqlite"])
        with redis_server() as url:
            results["load"]["redis"] = bench_store(url, matrix)
            log.info("redis: %s", results["load"]["redis"])
    write_result("gallery" + (f"-{args.only}" if args.only else ""), {**results, "machine": info})
    return 0


if __name__ == "__main__":
    sys.exit(main())
