"""Decisions on faces the model's numbers were not fitted to: the 1:1 operating point and open-set identification.

    .venv/bin/python bench/calibrate.py                  # LFW calibration set + the shared photo sets
    .venv/bin/python bench/calibrate.py --repeats 5      # fewer random galleries per size (faster)

Data: ``../shared/data/calibration/lfw`` (2,706 people, 6,031 photos; research data:
only numbers derived from it are shipped) and the two shared photo sets. Each photo's
largest face is embedded once (cached under ``~/.cache/facestream/bench``).

1. **dlib's published boundary, mapped to cosine.** dlib decides "same person" at
   Euclidean distance < 0.6 between raw descriptors; the gallery keeps L2-normalised
   vectors and compares by cosine. The cosine threshold that agrees with dlib's rule on
   the most LFW pairs is the shipped 1:1 point (``ModelSpec.threshold``), checked per
   fold of people; both rules' error rates and ROC AUC are reported.
2. **Expected error rates at the shipped point**, on LFW (95% intervals from a
   bootstrap over people: pairs of one person are not independent) and on both
   shared sets.
3. **Open-set identification** (``facestream.gallery.decision``), two-fold by person:
   the impostor tail and the photo-count shift are fitted on one half of the people
   and tested on the other. For galleries of 10 to ~1,300 people (random draws,
   up to 3 photos each, through the real ``Matcher``), strangers (people not
   enrolled) are searched: the share named is the measured false-accept rate against
   the target ``far``; held-out photos of enrolled people give the share named right.
   Beside it, the decision before this work (best photo, fixed 0.927). Larger
   galleries than the data holds (10,000) are the model's prediction, marked so.
4. **Photo count**: how often a stranger passes a person enrolled from 1 or 4 photos,
   best-photo rule against the mean-embedding rule.
5. **What ships**: the tail and shift fitted on all of LFW (``ship`` in the JSON;
   ``stream/engine/operating_points.py`` holds them).

Results: ``bench/results/calibrate-<machine>.json``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine_info, write_result  # noqa: E402
from facestream.gallery import open_store  # noqa: E402
from facestream.gallery.decision import ImpostorTail  # noqa: E402
from facestream.gallery.matcher import Matcher  # noqa: E402
from facestream.gallery.types import NewEmbedding, Person  # noqa: E402
from facestream.trainer.metrics import roc_auc, roc_curve  # noqa: E402

log = logging.getLogger("bench.calibrate")
SHARED = ROOT.parent / "shared" / "data"
SETS = ("deepface_celebs", "face_recognition_examples")
OLD_THRESHOLD = 0.927  # the threshold shipped before this calibration (fitted to the shared photos)
GALLERY_SIZES = (10, 30, 100, 300, 1000)
EXTRAPOLATED_SIZES = (3000, 10000)
FARS = (1e-2, 1e-3, 1e-4)
MODEL = "bench-model"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lfw", type=Path, default=SHARED / "calibration" / "lfw" / "images")
    p.add_argument("--shared", type=Path, default=SHARED / "faces")
    p.add_argument("--model", default="dlib-resnet-v1")
    p.add_argument("--repeats", type=int, default=10, help="random galleries per size and fold")
    p.add_argument("--photos", type=int, default=3, help="photos enrolled per person (at most)")
    p.add_argument("--bootstrap", type=int, default=200, help="resamples of people for the intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    return p.parse_args(argv)


# -- embeddings ----------------------------------------------------------------------------------
def embed_photos(analyzer, items: list[tuple[str, Path]], cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels, raw descriptors) of the largest face of each photo; photos without a face are left out.
    Cached by model and photo list."""
    from facestream.stream.engine.imageio import load_image

    key = hashlib.sha256((analyzer.model_id + "\n".join(f"{n}|{p}" for n, p in items)).encode()).hexdigest()[:16]
    cache = cache_dir / f"embeddings-{key}.npz"
    if cache.is_file():
        data = np.load(cache)
        return data["labels"], data["raws"]
    labels, raws = [], []
    for i, (name, path) in enumerate(items):
        img = load_image(path)
        try:
            faces, _ = analyzer.largest_face(img, str(path))
        except Exception as exc:  # no face: the photo is not part of the measurement
            log.info("no face in %s (%s)", path, exc)
            continue
        raws.append(analyzer.embedder.run(analyzer.chips(img, faces))[0])
        labels.append(name)
        if i % 500 == 0:
            print(f"  embedded {i}/{len(items)}", flush=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, labels=np.array(labels), raws=np.stack(raws).astype(np.float32))
    return np.array(labels), np.stack(raws).astype(np.float32)


def lfw_items(root: Path) -> list[tuple[str, Path]]:
    return [(p.parent.name, p) for p in sorted(root.glob("*/*.jpg"))]


def shared_items(folder: Path) -> list[tuple[str, Path]]:
    with open(folder / "manifest.csv", newline="") as fh:
        return [(row["identity"], folder / row["relative_path"]) for row in csv.DictReader(fh)]


def normalise(raw: np.ndarray) -> np.ndarray:
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


# -- pairs ---------------------------------------------------------------------------------------
def pair_index(labels: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) among ``keep`` (default all): i, j and whether they are one person."""
    idx = np.flatnonzero(keep) if keep is not None else np.arange(len(labels))
    a, b = np.triu_indices(len(idx), k=1)
    i, j = idx[a], idx[b]
    return i, j, labels[i] == labels[j]


def cosine_pairs(e: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 4_000_000) -> np.ndarray:
    out = np.empty(len(i), np.float32)
    for s in range(0, len(i), chunk):
        out[s:s + chunk] = np.einsum("nd,nd->n", e[i[s:s + chunk]], e[j[s:s + chunk]])
    return out


def euclid_pairs(raw: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 4_000_000) -> np.ndarray:
    out = np.empty(len(i), np.float32)
    for s in range(0, len(i), chunk):
        d = raw[i[s:s + chunk]] - raw[j[s:s + chunk]]
        out[s:s + chunk] = np.sqrt(np.einsum("nd,nd->n", d, d))
    return out


def dlib_mapping(labels: np.ndarray, raw: np.ndarray, e: np.ndarray, folds: np.ndarray) -> dict:
    """The cosine threshold that agrees most with dlib's Euclidean 0.6, on all LFW pairs and per fold."""
    out: dict = {}
    grid = np.round(np.arange(0.895, 0.935, 0.0005), 4)
    for name, keep in (("all", None), ("fold_a", folds == 0), ("fold_b", folds == 1)):
        i, j, same = pair_index(labels, keep)
        cos, eu = cosine_pairs(e, i, j), euclid_pairs(raw, i, j)
        dlib = eu < 0.6
        agree = np.array([np.mean(dlib == (cos >= t)) for t in grid])
        best = float(grid[int(np.argmax(agree))])
        row = {"pairs": int(len(i)), "genuine": int(same.sum()), "best_cosine": best,
               "agreement": round(float(agree.max()), 5),
               "dlib_0.6": {"far": float(dlib[~same].mean()), "frr": float((~dlib[same]).mean())},
               "cosine_at_best": {"far": float((cos[~same] >= best).mean()), "frr": float((cos[same] < best).mean())}}
        if name == "all":
            row["auc_cosine"] = roc_auc(roc_curve(cos, same))
            row["auc_euclid_raw"] = roc_auc(roc_curve(-eu, same))
            norms = np.linalg.norm(raw, axis=1)
            row["raw_norm"] = {"mean": round(float(norms.mean()), 4), "sd": round(float(norms.std()), 4)}
            row["cosine_from_mean_norm"] = round(1 - 0.36 / (2 * float(norms.mean()) ** 2), 4)
        out[name] = row
    return out


def rates_with_interval(labels: np.ndarray, e: np.ndarray, threshold: float, n_boot: int, seed: int,
                        max_impostor: int = 3_000_000) -> dict:
    """FAR and FRR at ``threshold`` over all pairs, with 95% intervals from resampling people."""
    rng = np.random.default_rng(seed)
    i, j, same = pair_index(labels)
    if (~same).sum() > max_impostor:  # a uniform sample of impostor pairs keeps the bootstrap quick
        imp = np.flatnonzero(~same)
        keep = np.zeros(len(i), bool)
        keep[rng.choice(imp, max_impostor, replace=False)] = True
        keep |= same
        i, j, same = i[keep], j[keep], same[keep]
    cos = cosine_pairs(e, i, j)
    accept = cos >= threshold
    people, code = np.unique(labels, return_inverse=True)
    ci, cj = code[i], code[j]
    far_b, frr_b = [], []
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, len(people), len(people)), minlength=len(people)).astype(np.float64)
        pw = w[ci] * w[cj]
        g, m = pw[same], pw[~same]
        if g.sum() > 0:
            frr_b.append(float((g * ~accept[same]).sum() / g.sum()))
        far_b.append(float((m * accept[~same]).sum() / max(m.sum(), 1e-12)))
    return {
        "threshold": threshold, "genuine_pairs": int(same.sum()), "impostor_pairs": int((~same).sum()),
        "far": float(accept[~same].mean()),
        "far_95": [float(np.percentile(far_b, 2.5)), float(np.percentile(far_b, 97.5))],
        "frr": float((~accept[same]).mean()),
        "frr_95": [float(np.percentile(frr_b, 2.5)), float(np.percentile(frr_b, 97.5))] if frr_b else None,
    }


# -- the open-set model ----------------------------------------------------------------------------
def fit_tail(labels: np.ndarray, e: np.ndarray, keep: np.ndarray, source: str) -> ImpostorTail:
    i, j, same = pair_index(labels, keep)
    return ImpostorTail.fit(cosine_pairs(e, i[~same], j[~same]), source=source)


def fit_photo_shift(labels: np.ndarray, e: np.ndarray, keep: np.ndarray, tail: ImpostorTail, seed: int,
                    ks: tuple[int, ...] = (2, 3, 5), levels: tuple[float, ...] = (1e-3, 1e-4)) -> dict:
    """How much closer strangers come to the mean of k photos than to one: ``shift / (1 - 1/k)`` per k and
    tail level, and their median (the shipped ``photo_shift``)."""
    rng = np.random.default_rng(seed)
    people = np.unique(labels[keep])
    estimates = {}
    for k in ks:
        many = [p for p in people if (labels == p).sum() >= k]
        scores = []
        for p in many:
            sel = rng.choice(np.flatnonzero(labels == p), k, replace=False)
            mean = e[sel].mean(axis=0)
            mean /= np.linalg.norm(mean)
            scores.append(e[keep & (labels != p)] @ mean)
        s = np.sort(np.concatenate(scores))
        for level in levels:
            at = float(s[int(len(s) * (1 - level))])
            estimates[f"k{k}@{level:g}"] = (at - tail.score_at(math.log10(level))) / (1 - 1 / k)
    return {"per_k_and_level": {k: round(v, 5) for k, v in estimates.items()},
            "photo_shift": round(float(np.median(list(estimates.values()))), 5)}


def build_store(people: list[tuple[str, np.ndarray]]):
    store = open_store("sqlite:///:memory:")
    store.import_people(
        (Person(f"id-{name}", name), [NewEmbedding(v, MODEL, hashlib.sha1(v.tobytes()).hexdigest()) for v in vecs])
        for name, vecs in people)
    return store


def open_set(labels: np.ndarray, e: np.ndarray, test: np.ndarray, tail: ImpostorTail, verify: float,
             sizes: tuple[int, ...], repeats: int, photos: int, seed: int) -> list[dict]:
    """Strangers and enrolled people searched through the real Matcher, for each gallery size."""
    rng = np.random.default_rng(seed)
    people = np.unique(labels[test])
    rows = []
    for n in sizes:
        if n >= len(people) - 20:
            continue
        tally = {f"{f:g}": {"strangers": 0, "named": 0, "probes": 0, "right": 0, "wrong": 0} for f in FARS}
        old = {"strangers": 0, "named": 0, "probes": 0, "right": 0, "wrong": 0}
        reps = repeats if n <= 300 else max(1, repeats // 3)
        for _ in range(reps):
            chosen = rng.choice(people, n, replace=False)
            enrolled, probes, probe_names = [], [], []
            for p in chosen:
                idx = rng.permutation(np.flatnonzero(labels == p))
                if len(idx) >= 2:  # keep one photo back as the probe
                    probes.append(idx[0])
                    probe_names.append(p)
                    idx = idx[1:]
                enrolled.append((p, e[idx[:photos]]))
            strangers = np.flatnonzero(test & ~np.isin(labels, chosen))
            store = build_store(enrolled)
            for f in FARS:
                with Matcher(store, MODEL, verify, tail=tail, far=f, device="cpu", watch=False) as m:
                    named = [r.best is not None for r in m.search(e[strangers], top_k=1)]
                    got = [r.best.name if r.best else None for r in m.search(e[np.array(probes, int)], top_k=1)] \
                        if probes else []
                t = tally[f"{f:g}"]
                t["strangers"] += len(strangers)
                t["named"] += int(sum(named))
                t["probes"] += len(probes)
                t["right"] += sum(g == p for g, p in zip(got, probe_names, strict=True))
                t["wrong"] += sum(g is not None and g != p for g, p in zip(got, probe_names, strict=True))
            store.close()
            # before: every photo a row, the best photo wins, fixed 0.927
            rows_m = np.concatenate([v for _, v in enrolled])
            owner = np.concatenate([[p] * len(v) for p, v in enrolled])
            best = (e[strangers] @ rows_m.T).max(axis=1)
            old["strangers"] += len(strangers)
            old["named"] += int((best >= OLD_THRESHOLD).sum())
            if probes:
                s = e[np.array(probes, int)] @ rows_m.T
                top = s.argmax(axis=1)
                ok = s.max(axis=1) >= OLD_THRESHOLD
                old["probes"] += len(probes)
                old["right"] += int((ok & (owner[top] == np.array(probe_names))).sum())
                old["wrong"] += int((ok & (owner[top] != np.array(probe_names))).sum())
        row = {"people": n, "galleries": reps, "photos_per_person": photos,
               "by_far": {f: _rates(t) for f, t in tally.items()}, "before_best_photo_0.927": _rates(old),
               "predicted_far": {f"{f:g}": f for f in FARS}}
        rows.append(row)
        print(f"  {n:5d} people: strangers named " + ", ".join(
            f"{f}: {r['strangers_named']:.2e}" for f, r in row["by_far"].items())
              + f"; before: {row['before_best_photo_0.927']['strangers_named']:.2e}; right names at 1e-3: "
              f"{row['by_far']['0.001']['right_name']}")
    return rows


def _rates(t: dict) -> dict:
    return {"strangers": t["strangers"], "strangers_named": t["named"] / max(1, t["strangers"]),
            "probes": t["probes"], "right_name": round(t["right"] / t["probes"], 4) if t["probes"] else None,
            "wrong_name": round(t["wrong"] / t["probes"], 4) if t["probes"] else None}


def photo_count(labels: np.ndarray, e: np.ndarray, test: np.ndarray, tail: ImpostorTail, verify: float,
                seed: int) -> dict:
    """A stranger's chance to pass one person enrolled from 1 or 4 photos: best photo at 0.927 vs the
    mean-embedding rule at the one-person threshold for far 1e-3."""
    rng = np.random.default_rng(seed)
    people = [p for p in np.unique(labels[test]) if (labels == p).sum() >= 4]
    out = {}
    for k in (1, 4):
        best_hits = mean_hits = total = 0
        threshold = tail.threshold(1e-3, 1, k)
        for p in people:
            sel = rng.choice(np.flatnonzero(labels == p), k, replace=False)
            strangers = e[test & (labels != p)]
            s = strangers @ e[sel].T
            mean = e[sel].mean(axis=0)
            mean /= np.linalg.norm(mean)
            best_hits += int((s.max(axis=1) >= OLD_THRESHOLD).sum())
            mean_hits += int((strangers @ mean >= threshold).sum())
            total += len(strangers)
        out[f"{k}_photos"] = {"best_photo_0.927": best_hits / total, "mean_embedding_far_1e-3": mean_hits / total,
                              "threshold": round(threshold, 4), "trials": total}
    return out


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from facestream.stream.config import load_config
    from facestream.stream.engine.analyzer import FaceAnalyzer

    info = machine_info()
    analyzer = FaceAnalyzer(load_config(overrides={"embedder.model": args.model}, env={}))
    cache = Path.home() / ".cache" / "facestream" / "bench"
    print("embedding LFW")
    labels, raw = embed_photos(analyzer, lfw_items(args.lfw), cache)
    e = normalise(raw)
    rng = np.random.default_rng(args.seed)
    people = np.unique(labels)
    side = dict(zip(people, rng.permutation(len(people)) % 2, strict=True))
    folds = np.array([side[p] for p in labels])

    mapping = dlib_mapping(labels, raw, e, folds)
    verify = round(mapping["all"]["best_cosine"], 3)
    print(f"dlib 0.6 -> cosine {verify} (agreement {mapping['all']['agreement']:.4f}; folds "
          f"{mapping['fold_a']['best_cosine']} / {mapping['fold_b']['best_cosine']})")
    shipped = {"lfw": rates_with_interval(labels, e, verify, args.bootstrap, args.seed)}
    old = {"lfw": rates_with_interval(labels, e, OLD_THRESHOLD, args.bootstrap, args.seed)}
    for name in SETS:
        lab, r = embed_photos(analyzer, shared_items(args.shared / name), cache)
        shipped[name] = rates_with_interval(lab, normalise(r), verify, args.bootstrap, args.seed)
        old[name] = rates_with_interval(lab, normalise(r), OLD_THRESHOLD, args.bootstrap, args.seed)
    for name, r in shipped.items():
        print(f"  at {verify}: {name}: FAR {r['far']:.2e} {r['far_95']}, FRR {r['frr']:.4f} {r['frr_95']}")

    folds_out = []
    for fit_fold in (0, 1):
        fit, test = folds == fit_fold, folds != fit_fold
        tail = fit_tail(labels, e, fit, f"LFW fold {fit_fold}")
        shift = fit_photo_shift(labels, e, fit, tail, args.seed)
        tail = ImpostorTail(tail.scores, tail.log10_p, shift["photo_shift"], tail.source)
        print(f"fold {fit_fold}: tail of {len(tail.scores)} points, photo shift {shift['photo_shift']}; testing on "
              f"the other {len(np.unique(labels[test]))} people")
        folds_out.append({
            "fitted_on": f"fold {fit_fold}", "tail": tail.to_json(), "photo_shift": shift,
            "open_set": open_set(labels, e, test, tail, verify, GALLERY_SIZES, args.repeats, args.photos,
                                 args.seed + fit_fold),
            "photo_count": photo_count(labels, e, test, tail, verify, args.seed),
            "extrapolated": {str(n): {f"{f:g}": round(tail.threshold(f, n, args.photos), 4) for f in FARS}
                             for n in EXTRAPOLATED_SIZES},
        })

    all_people = np.ones(len(labels), bool)
    ship_tail = fit_tail(labels, e, all_people, f"LFW calibration set: {len(labels)} photos of {len(people)} people, "
                                                "impostor pairs (bench/calibrate.py)")
    ship_shift = fit_photo_shift(labels, e, all_people, ship_tail, args.seed)
    ship_tail = ImpostorTail(ship_tail.scores, ship_tail.log10_p, ship_shift["photo_shift"], ship_tail.source)
    thresholds = {str(n): {f"{f:g}": round(ship_tail.threshold(f, n, 1), 4) for f in FARS}
                  for n in (1, 10, 100, 1000, 10000)}
    print("thresholds (one photo per person) by gallery size and far:", thresholds)
    write_result("calibrate", {
        "model": analyzer.model_id, "lfw": {"photos": int(len(labels)), "people": int(len(people))},
        "dlib_mapping": mapping, "verify_threshold": verify,
        "at_shipped_threshold": shipped, "at_old_threshold_0.927": old,
        "folds": folds_out,
        "ship": {"verify_threshold": verify, "tail": ship_tail.to_json(), "photo_shift": ship_shift,
                 "thresholds_one_photo": thresholds},
        "machine": info,
    }, out_dir=args.out, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
