"""Child process for the two-process tests: a long-lived matcher that prints each change it sees.

Usage: python -m tests.gallery.watch_matcher REDIS_URL SEED. It looks up one fixed
vector (made from SEED, as the parent makes it) every 10 ms and prints a JSON line
``{"t": time, "best": name-or-null}`` whenever the answer changes.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from facestream.gallery import open_store
from facestream.gallery.matcher import Matcher


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return v / np.linalg.norm(v)


def main() -> None:
    url, seed = sys.argv[1], int(sys.argv[2])
    v = vector(seed)
    matcher = Matcher(open_store(url), "m1", threshold=0.9, device="cpu")
    print(json.dumps({"ready": True}), flush=True)
    last: object = object()
    while True:
        res = matcher.identify(v)
        name = res.best.name if res.best else None
        if name != last:
            print(json.dumps({"t": time.time(), "best": name}), flush=True)
            last = name
        time.sleep(0.01)


if __name__ == "__main__":
    main()
