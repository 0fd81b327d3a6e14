"""Levers on open-set identification that are measured but not (or not by default) shipped.

    .venv/bin/python bench/levers.py                    # galleries of 40, 200, 1,000; probes of 1, 2, 3 photos

On the LFW calibration set (research data: only derived numbers ship), two folds by
person, galleries of ONE photo per person, probes the mean of k other photos of an
enrolled person, strangers the mean of k photos of someone not enrolled. Each rule's
threshold is the score that strangers' probes exceed with chance ``far`` on the
fitting half (many random galleries), measured on the other half. No tail model is
involved: this is what a rule could give if its stranger statistic were known exactly.

Rules (``score`` of a probe against the gallery):

* ``best``: the best cosine (what ships);
* ``lead<w>``: ``s1 + w (s1 - s2)``, the best plus w times its lead over the runner-up
  (``match.margin_weight``; shipped off by default because its stranger rate is read from
  the one-photo tail assuming independent tries, which on LFW is conservative enough to
  eat most of the gain: ``bench/templates.py --held-out-only --margin-weight W``);
* ``flip``: every face embedded twice, as is and mirrored, the two descriptors averaged
  (test-time augmentation; not shipped: it changes every embedding, so every shipped
  number and every stored gallery would have to be redone).

Results: ``bench/results/levers-<machine>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.calibrate import SHARED, lfw_items, normalise  # noqa: E402
from bench.common import machine_info, write_result  # noqa: E402

SIZES = (40, 200, 1000)
PROBE_PHOTOS = (1, 2, 3)
RULES = ("best", "lead0.5", "lead1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lfw", type=Path, default=SHARED / "calibration" / "lfw" / "images")
    p.add_argument("--far", type=float, default=1e-3)
    p.add_argument("--galleries", type=int, default=40, help="random galleries per size, fold and half")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    return p.parse_args(argv)


def embed_with_mirror(items: list[tuple[str, Path]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, descriptors, descriptors of the mirrored chip) of each photo's largest face; cached."""
    from facestream.stream.engine.analyzer import FaceAnalyzer
    from facestream.stream.engine.imageio import load_image

    analyzer = FaceAnalyzer()
    key = hashlib.sha256((analyzer.model_id + "\n".join(f"{n}|{p}" for n, p in items)).encode()).hexdigest()[:16]
    cache = Path.home() / ".cache" / "facestream" / "bench" / f"mirrored-{key}.npz"
    if cache.is_file():
        data = np.load(cache)
        return data["labels"], data["plain"], data["mirrored"]
    labels, plain, mirrored = [], [], []
    for i, (name, path) in enumerate(items):
        img = load_image(path)
        faces = analyzer.detect(img, with_landmarks=False)
        if not len(faces):
            continue  # no face: not part of the measurement
        chip = analyzer.chips(img, faces[int((faces.width * faces.height).argmax())])
        both = analyzer.embedder.run(np.concatenate([chip, chip[:, :, ::-1]]))
        plain.append(both[0])
        mirrored.append(both[1])
        labels.append(name)
        if i % 1000 == 0:
            print(f"  embedded {i}/{len(items)}", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    out = np.array(labels), np.stack(plain).astype(np.float32), np.stack(mirrored).astype(np.float32)
    np.savez(cache, labels=out[0], plain=out[1], mirrored=out[2])
    return out


def galleries(by_person: list[np.ndarray], people: np.ndarray, size: int, k: int, count: int,
              rng: np.random.Generator):
    """Random galleries among ``people``: (gallery rows, probe photo groups, each probe's gallery index or -1)."""
    rich = [p for p in people if len(by_person[p]) > k]
    for _ in range(count):
        probed = rng.choice(rich, size=min(len(rich), size // 2), replace=False)
        others = rng.choice(np.setdiff1d(people, probed), size=size - len(probed), replace=False)
        enrolled = set(probed) | set(others)
        rows, groups, truth = [], [], []
        for gi, p in enumerate(np.concatenate([probed, others])):
            photos = rng.permutation(by_person[p])
            rows.append(photos[0])
            if gi < len(probed):
                groups.append(photos[1:1 + k])
                truth.append(gi)
        for p in people:
            if p not in enrolled and len(by_person[p]) >= k:
                groups.append(rng.permutation(by_person[p])[:k])
                truth.append(-1)
        yield np.array(rows), groups, np.array(truth)


def rule_scores(e: np.ndarray, rows: np.ndarray, groups: list[np.ndarray], rule: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """Each probe's best gallery index and its score under ``rule``."""
    probes = normalise(np.stack([e[g].mean(axis=0) for g in groups]))
    s = probes @ e[rows].T
    top = s.argmax(axis=1)
    two = np.sort(s, axis=1)[:, -2:]
    if rule == "best":
        return top, two[:, 1]
    w = float(rule.removeprefix("lead"))
    return top, two[:, 1] + w * (two[:, 1] - two[:, 0])


def measure(e: np.ndarray, by_person: list[np.ndarray], fit: np.ndarray, test: np.ndarray, size: int, k: int,
            rule: str, far: float, count: int, seed: int) -> dict:
    strangers = []
    for rows, groups, truth in galleries(by_person, fit, size, k, count, np.random.default_rng(seed)):
        _, score = rule_scores(e, rows, groups, rule)
        strangers.append(score[truth < 0])
    fitted = np.concatenate(strangers)
    threshold = float(np.quantile(fitted, 1.0 - far))
    t = {"probes": 0, "right": 0, "wrong": 0, "strangers": 0, "named": 0}
    for rows, groups, truth in galleries(by_person, test, size, k, count, np.random.default_rng(seed + 1)):
        top, score = rule_scores(e, rows, groups, rule)
        named, enrolled = score > threshold, truth >= 0
        t["probes"] += int(enrolled.sum())
        t["right"] += int(np.sum(named & enrolled & (top == truth)))
        t["wrong"] += int(np.sum(named & enrolled & (top != truth)))
        t["strangers"] += int((~enrolled).sum())
        t["named"] += int(np.sum(named & ~enrolled))
    return {"right": round(t["right"] / t["probes"], 4), "wrong": round(t["wrong"] / t["probes"], 5),
            "strangers_named": round(t["named"] / max(1, t["strangers"]), 6), "strangers": t["strangers"],
            "stranger_scores_fitted": int(len(fitted))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    labels, plain, mirrored = embed_with_mirror(lfw_items(args.lfw))
    embeddings = {"plain": normalise(plain), "flip": normalise(normalise(plain) + normalise(mirrored))}
    names, owner = np.unique(labels, return_inverse=True)
    by_person = [np.flatnonzero(owner == p) for p in range(len(names))]
    half = np.random.default_rng(args.seed).permutation(len(names)) % 2
    rows = []
    for size in SIZES:
        for k in PROBE_PHOTOS:
            for emb_name, e in embeddings.items():
                for rule in RULES:
                    folds = [measure(e, by_person, np.flatnonzero(half == f), np.flatnonzero(half != f), size, k,
                                     rule, args.far, args.galleries, args.seed + 7 * f) for f in (0, 1)]
                    rows.append({"people": size, "probe_photos": k, "embedding": emb_name, "rule": rule,
                                 "folds": folds})
                    print(f"{size:5d} people, probe of {k}, {emb_name:5s} {rule:7s}: right "
                          f"{folds[0]['right']:.3f} / {folds[1]['right']:.3f}, strangers named "
                          f"{folds[0]['strangers_named']:.2e} / {folds[1]['strangers_named']:.2e}", flush=True)
    write_result("levers", {"far": args.far, "photos": int(len(labels)), "people": int(len(names)),
                            "galleries_per_fold": args.galleries, "rows": rows, "machine": machine_info()},
                 out_dir=args.out, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
