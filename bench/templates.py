"""Templates of several views against galleries of one photo: the stranger tail they need and what they gain.

    .venv/bin/python bench/templates.py                 # LFW calibration set, two folds by person
    .venv/bin/python bench/templates.py --repeats 2     # fewer random galleries (faster)

A live track sees a person several times; its **template** (the mean of its distinct
views, :mod:`facestream.stream.live.tracker`) is what the matcher searches. A
stranger's template of k views comes closer to everybody than one photo does, so its
decision needs its own tail. This bench measures it on the LFW calibration set
(research data: only derived numbers ship), two-fold by person as
``bench/calibrate.py`` does for photo counts:

1. **The shift.** On the fitting half: impostor scores of mean-of-k probes (k = 1, 2,
   3, 5 photos of one person) against means of m photos of another (m = 1, 2, 3);
   at tail levels 1e-3 .. 1e-5 the score lies above the one-photo tail by a shift;
   ``view_shift`` is fitted as ``shift / (1 - 1/k)`` at m = 1, and the sum
   ``photo_shift (1 - 1/m) + view_shift (1 - 1/k)`` is checked against every (k, m).
2. **Held out.** On the other half, galleries of 40, 200 and 1,000 people enrolled
   from ONE photo each, searched through the real ``Matcher`` with ``views=k``:
   strangers' templates (people not enrolled; k of their photos) give the measured
   false-accept rate against ``far``; templates of k other photos of enrolled people
   give the share named right and wrong. Beside it: the same templates read as one
   photo (no view shift), which over-names strangers.

Results: ``bench/results/templates-<machine>.json``; ``ship`` holds the view shift
fitted on all of LFW (``stream/engine/operating_points.py``).

3. **Enrolled from several views** (``--enrolment``): people enrolled from m = 1, 3, 5
   photos (what a clip or a live track gives: ``facestream enroll clip.mp4``, the
   dashboard's "Enrol as new person") in galleries of 40, 200 and 1,000 where everyone
   else has one photo; their k-view templates (k = 1, 3 other photos) named right and
   wrong, and strangers' k-view templates named, at ``far``. LFW has few people with
   six photos or more, so the probed people are those with m + 1 photos or more (up
   to half the gallery). Results: ``bench/results/templates-enrolment-<machine>.json``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.calibrate import SHARED, build_store, embed_photos, fit_tail, lfw_items, normalise  # noqa: E402
from bench.common import machine_info, write_result  # noqa: E402
from facestream.gallery.decision import ImpostorTail  # noqa: E402
from facestream.gallery.matcher import Matcher  # noqa: E402

log = logging.getLogger("bench.templates")
MODEL = "bench-model"
KS = (1, 2, 3, 5)
MS = (1, 2, 3)
LEVELS = (1e-3, 1e-4, 1e-5)
SIZES = (40, 200, 1000)
FAR = 1e-3
VERIFY = 0.914


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lfw", type=Path, default=SHARED / "calibration" / "lfw" / "images")
    p.add_argument("--model", default="dlib-resnet-v1")
    p.add_argument("--repeats", type=int, default=6, help="random galleries per size and fold")
    p.add_argument("--draws", type=int, default=4, help="random k-photo templates per person")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--held-out-only", action="store_true", help="skip fitting the shipped numbers")
    p.add_argument("--enrolment", action="store_true",
                   help="only the enrolled-from-several-views axis (people enrolled from 1, 3, 5 photos)")
    p.add_argument("--margin-weight", type=float, default=None,
                   help="match.margin_weight for the held-out galleries (default: the shipped config's); "
                        "with --held-out-only the result is named templates-margin<W>")
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    return p.parse_args(argv)


def mean_of(e: np.ndarray, idx: np.ndarray) -> np.ndarray:
    v = e[idx].mean(axis=0)
    return v / np.linalg.norm(v)


def templates(labels: np.ndarray, e: np.ndarray, people: np.ndarray, k: int, draws: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``draws`` random means of k distinct photos per person who has k; (vectors, owner labels)."""
    vecs, owners = [], []
    for p in people:
        idx = np.flatnonzero(labels == p)
        if len(idx) < k:
            continue
        picks = [rng.choice(idx, k, replace=False) for _ in range(draws)] if k > 1 else [[i] for i in idx]
        for pick in picks:
            vecs.append(mean_of(e, np.asarray(pick)))
            owners.append(p)
    return np.array(vecs, np.float32).reshape(-1, e.shape[1]), np.array(owners)


def impostor_scores(probes: np.ndarray, probe_owner: np.ndarray, refs: np.ndarray, ref_owner: np.ndarray,
                    chunk: int = 2048) -> np.ndarray:
    out = []
    for a in range(0, len(probes), chunk):
        s = probes[a:a + chunk] @ refs.T
        out.append(s[probe_owner[a:a + chunk, None] != ref_owner[None, :]])
    return np.concatenate(out)


def measure_shifts(labels: np.ndarray, e: np.ndarray, keep: np.ndarray, tail: ImpostorTail, draws: int,
                   seed: int) -> dict:
    """Per (k views, m photos) and tail level: how far above the one-photo tail strangers score."""
    rng = np.random.default_rng(seed)
    people = np.unique(labels[keep])
    out: dict[str, dict[str, float]] = {}
    for m in MS:
        refs, ref_owner = templates(labels, e, people, m, 1, rng)
        for k in KS:
            if k == 1 and m == 1:
                continue
            probes, owner = templates(labels, e, people, k, draws, rng)
            s = np.sort(impostor_scores(probes, owner, refs, ref_owner))
            row = {"pairs": int(len(s))}
            for level in LEVELS:
                if len(s) * level < 10:
                    continue
                at = float(s[int(len(s) * (1 - level))])
                row[f"{level:g}"] = round(at - tail.score_at(math.log10(level)), 5)
            out[f"k{k}_m{m}"] = row
            print(f"  k={k} views, m={m} photos: {len(s):,} impostor pairs, shift "
                  + ", ".join(f"{lv}: {v}" for lv, v in row.items() if lv != "pairs"), flush=True)
    return out


def fit_view_shift(shifts: dict) -> float:
    """``shift / (1 - 1/k)`` at m = 1, the largest over levels and k (the safe side)."""
    vals = [v / (1 - 1 / k) for k in KS if k > 1 for lv, v in shifts[f"k{k}_m1"].items() if lv != "pairs"]
    return round(float(max(vals)), 5)


def additivity(shifts: dict, photo_shift: float, view_shift: float) -> dict:
    """Measured shift minus the additive model's, per (k, m) and level (negative = the model is safe)."""
    out = {}
    for key, row in shifts.items():
        k, m = (int(x[1:]) for x in key.split("_"))
        model = photo_shift * (1 - 1 / m) + view_shift * (1 - 1 / k)
        out[key] = {lv: round(v - model, 5) for lv, v in row.items() if lv != "pairs"}
    return out


def decide(matcher: Matcher, e: np.ndarray, groups: list[np.ndarray], rule: str) -> list[str | None]:
    """The name each group of photos gets under ``rule``:

    * ``template``: their mean, decided for a template of that many views (what a track does);
    * ``as_one_photo``: their mean decided as if it were one photo (no view shift: over-names strangers);
    * ``views_then_template``: each photo alone as it arrives, then the mean of all (the live recognizer:
      every new distinct view is searched alone and as part of the template);
    * ``best_single_view``: each photo alone, any name wins (the frame vote of before, at its best).
    """
    k = len(groups[0])
    means = np.stack([mean_of(e, g) for g in groups])
    if rule in ("template", "as_one_photo"):
        got = matcher.search(means, top_k=1, views=k if rule == "template" else 1)
        return [r.best.name if r.best else None for r in got]
    singles = matcher.search(e[np.concatenate(groups)], top_k=1)
    names: list[str | None] = []
    tmpl = matcher.search(means, top_k=1, views=k) if rule == "views_then_template" else [None] * len(groups)
    for j, t in enumerate(tmpl):
        named = [r.best.name for r in singles[j * k:(j + 1) * k] if r.best is not None]
        if t is not None and t.best is not None:
            named.append(t.best.name)
        names.append(named[-1] if named and len(set(named)) == 1 else None)  # disagreeing names: nobody
    return names


def held_out(labels: np.ndarray, e: np.ndarray, test: np.ndarray, tail: ImpostorTail, repeats: int, seed: int,
             margin_weight: float) -> list[dict]:
    """Galleries of one photo per person; k-view templates of enrolled people and of strangers."""
    rng = np.random.default_rng(seed)
    people = np.unique(labels[test])
    rows = []
    for n in SIZES:
        tally: dict[str, dict[str, int]] = {}
        for _ in range(repeats):
            chosen = rng.choice(people, n, replace=False)
            enrolled, rest = [], {}
            for p in chosen:
                idx = rng.permutation(np.flatnonzero(labels == p))
                enrolled.append((p, e[idx[:1]]))
                rest[p] = idx[1:]
            strangers = [p for p in people if p not in set(chosen)]
            store = build_store(enrolled)
            with Matcher(store, MODEL, VERIFY, tail=tail, far=FAR, margin_weight=margin_weight, device="cpu",
                         watch=False) as matcher:
                for k in KS:
                    probes = [(p, r[:k]) for p, r in rest.items() if len(r) >= k]
                    strange = []
                    for p in strangers:
                        idx = np.flatnonzero(labels == p)
                        if len(idx) >= k:
                            for _ in range(2 if k > 1 else 1):
                                strange.append(rng.choice(idx, k, replace=False))
                    for rule in ("template", "as_one_photo", "views_then_template", "best_single_view"):
                        if rule != "template" and k == 1:
                            continue
                        t = tally.setdefault(f"k{k}_{rule}", {"probes": 0, "right": 0, "wrong": 0, "strangers": 0,
                                                               "named": 0})
                        if probes:
                            got = decide(matcher, e, [i for _, i in probes], rule)
                            t["probes"] += len(probes)
                            t["right"] += sum(g == p for g, (p, _) in zip(got, probes, strict=True))
                            t["wrong"] += sum(g is not None and g != p for g, (p, _) in zip(got, probes, strict=True))
                        if strange:
                            got = decide(matcher, e, strange, rule)
                            t["strangers"] += len(strange)
                            t["named"] += sum(g is not None for g in got)
            store.close()
        row = {"people": n, "galleries": repeats, "photos_per_person": 1, "far": FAR,
               "by_views": {key: {"probes": t["probes"], "right": round(t["right"] / max(1, t["probes"]), 4),
                                  "wrong": round(t["wrong"] / max(1, t["probes"]), 5), "strangers": t["strangers"],
                                  "strangers_named": round(t["named"] / max(1, t["strangers"]), 6)}
                            for key, t in tally.items()}}
        rows.append(row)
        print(f"  {n} people: " + "; ".join(f"{key} right {v['right']} wrong {v['wrong']} strangers named "
                                             f"{v['strangers_named']:.2e} ({v['strangers']})"
                                             for key, v in row["by_views"].items()), flush=True)
    return rows


ENROL_PHOTOS = (1, 3, 5)
PROBE_VIEWS = (1, 3)


def held_out_enrolment(labels: np.ndarray, e: np.ndarray, test: np.ndarray, tail: ImpostorTail, repeats: int,
                       seed: int, margin_weight: float) -> list[dict]:
    """People enrolled from m photos among galleries where everyone else has one: their k-view templates named
    right or wrong, strangers' k-view templates named."""
    rng = np.random.default_rng(seed)
    people = np.unique(labels[test])
    photos = {p: np.flatnonzero(labels == p) for p in people}
    rows = []
    for n in SIZES:
        for m in ENROL_PHOTOS:
            tally = {k: {"probes": 0, "right": 0, "wrong": 0, "strangers": 0, "named": 0} for k in PROBE_VIEWS}
            probed_people = 0
            for _ in range(repeats):
                rich = [p for p in people if len(photos[p]) >= m + 1]
                probed = list(rng.choice(rich, min(len(rich), max(1, n // 2)), replace=False))
                others = [p for p in people if p not in set(probed)]
                fillers = list(rng.choice(others, n - len(probed), replace=False))
                enrolled, rest = [], {}
                for p in probed:
                    idx = rng.permutation(photos[p])
                    enrolled.append((p, e[idx[:m]]))
                    rest[p] = idx[m:]
                enrolled += [(p, e[rng.choice(photos[p], 1)]) for p in fillers]
                strangers = [p for p in others if p not in set(fillers)]
                probed_people += len(probed)
                store = build_store(enrolled)
                with Matcher(store, MODEL, VERIFY, tail=tail, far=FAR, margin_weight=margin_weight, device="cpu",
                             watch=False) as matcher:
                    for k in PROBE_VIEWS:
                        probes = [(p, r[:k]) for p, r in rest.items() if len(r) >= k]
                        strange = [rng.choice(photos[p], k, replace=False) for p in strangers if len(photos[p]) >= k
                                   for _ in range(1 if k == 1 else 4)]  # several k-subsets: more stranger templates
                        t = tally[k]
                        if probes:
                            got = decide(matcher, e, [i for _, i in probes], "template")
                            t["probes"] += len(probes)
                            t["right"] += sum(g == p for g, (p, _) in zip(got, probes, strict=True))
                            t["wrong"] += sum(g is not None and g != p for g, (p, _) in zip(got, probes, strict=True))
                        if strange:
                            got = decide(matcher, e, strange, "template")
                            t["strangers"] += len(strange)
                            t["named"] += sum(g is not None for g in got)
                store.close()
            row = {"people": n, "enrol_photos": m, "galleries": repeats, "probed_people": probed_people // repeats,
                   "far": FAR,
                   "by_views": {f"k{k}": {"probes": t["probes"], "right": round(t["right"] / max(1, t["probes"]), 4),
                                          "wrong": round(t["wrong"] / max(1, t["probes"]), 5),
                                          "strangers": t["strangers"],
                                          "strangers_named": round(t["named"] / max(1, t["strangers"]), 6)}
                                for k, t in tally.items()}}
            rows.append(row)
            print(f"  {n} people, enrolled from {m}: " + "; ".join(
                f"{key} right {v['right']} wrong {v['wrong']} strangers named {v['strangers_named']:.2e} "
                f"({v['strangers']})" for key, v in row["by_views"].items()), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from facestream.stream.config import load_config
    from facestream.stream.engine.analyzer import FaceAnalyzer
    from facestream.stream.engine.operating_points import DLIB_RESNET_V1

    config = load_config(overrides={"embedder.model": args.model}, env={})
    analyzer = FaceAnalyzer(config)
    weight = config.match.margin_weight if args.margin_weight is None else args.margin_weight
    labels, raw = embed_photos(analyzer, lfw_items(args.lfw), Path.home() / ".cache" / "facestream" / "bench")
    e = normalise(raw)
    rng = np.random.default_rng(args.seed)
    people = np.unique(labels)
    side = dict(zip(people, rng.permutation(len(people)) % 2, strict=True))
    folds = np.array([side[p] for p in labels])
    photo_shift = float(DLIB_RESNET_V1["tail"]["photo_shift"])
    out_folds = []
    for fit_fold in (0, 1):
        fit, test = folds == fit_fold, folds != fit_fold
        base = fit_tail(labels, e, fit, f"LFW fold {fit_fold}")
        print(f"fold {fit_fold}: fitting on {len(np.unique(labels[fit]))} people", flush=True)
        shifts = measure_shifts(labels, e, fit, base, args.draws, args.seed + fit_fold)
        view_shift = fit_view_shift(shifts)
        tail = ImpostorTail(base.scores, base.log10_p, photo_shift, base.source, view_shift)
        print(f"  view shift {view_shift} (photo shift {photo_shift}); testing on the other half", flush=True)
        if args.enrolment:
            out_folds.append({"fitted_on": f"fold {fit_fold}", "view_shift": view_shift,
                              "enrolment": held_out_enrolment(labels, e, test, tail, args.repeats,
                                                              args.seed + 20 + fit_fold, weight)})
            continue
        out_folds.append({"fitted_on": f"fold {fit_fold}", "shifts": shifts, "view_shift": view_shift,
                          "additive_model_error": additivity(shifts, photo_shift, view_shift),
                          "held_out": held_out(labels, e, test, tail, args.repeats, args.seed + 10 + fit_fold,
                                               weight)})
    if args.enrolment:
        write_result("templates-enrolment", {"model": analyzer.model_id, "far": FAR, "margin_weight": weight,
                                              "folds": out_folds,
                                              "machine": machine_info()}, out_dir=args.out, quiet=True)
        return 0
    if args.held_out_only:
        write_result(f"templates-margin{weight:g}", {"model": analyzer.model_id, "far": FAR, "margin_weight": weight,
                                                      "folds": out_folds,
                                   "machine": machine_info()}, out_dir=args.out, quiet=True)
        return 0
    everyone = np.ones(len(labels), bool)
    ship_tail = ImpostorTail(tuple(DLIB_RESNET_V1["tail"]["scores"]), tuple(DLIB_RESNET_V1["tail"]["log10_p"]))
    ship_shifts = measure_shifts(labels, e, everyone, ship_tail, args.draws, args.seed)
    ship = {"view_shift": fit_view_shift(ship_shifts), "shifts": ship_shifts}
    print(f"ship: view_shift {ship['view_shift']}")
    write_result("templates", {"model": analyzer.model_id, "lfw": {"photos": int(len(labels)),
                                                                   "people": int(len(people))},
                               "far": FAR, "margin_weight": weight, "folds": out_folds, "ship": ship,
                               "machine": machine_info()},
                 out_dir=args.out, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
