"""Photos with more than one person: is the one meant the face at the centre?

    .venv/bin/python bench/framing.py                 # every LFW calibration photo
    .venv/bin/python bench/framing.py --limit 1500    # the first 1,500 (faster)

Enrolment takes one person per photo. A photo where a second face is at least half the
largest one's width used to be refused (``several_faces``); enrolment now takes the
largest face when it is the only face whose box holds the photo's centre
(:func:`facestream.stream.recognition.framing.photo_subject`). LFW's photos are news
crops centred on the person they are filed under, so the check is: among photos with a
second face of similar size, how often is the largest face the only central one (enrolled),
and when it is, is it the filed person (the same person as their other photos, at the 1:1
point)? Research data: only these counts are kept.

Results: ``bench/results/framing-<machine>.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.calibrate import SHARED, lfw_items  # noqa: E402
from bench.common import machine_info, write_result  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lfw", type=Path, default=SHARED / "calibration" / "lfw" / "images")
    p.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from facestream.stream.engine.analyzer import FaceAnalyzer
    from facestream.stream.engine.imageio import load_image
    from facestream.stream.recognition.framing import photo_subject

    analyzer = FaceAnalyzer()
    items = lfw_items(args.lfw)
    items = items[:args.limit] if args.limit else items
    crowded: list[tuple[str, np.ndarray]] = []  # (filed person, embedding of the face taken) per enrolled
    counts = {"photos": len(items), "with_a_face": 0, "similar_second_face": 0, "enrolled_by_centre": 0,
              "still_refused": 0}
    single: dict[str, list[np.ndarray]] = {}  # each person's photos with one clear face: their reference
    for i, (name, path) in enumerate(items):
        if i % 1000 == 0:
            print(f"  {i}/{len(items)}", flush=True)
        rgb = load_image(path)
        faces = analyzer.detect(rgb)
        if not len(faces):
            continue
        counts["with_a_face"] += 1
        subject, several = photo_subject(faces.width, faces.xyxy, rgb.shape)
        if not several:
            single.setdefault(name, []).append(analyzer.embed(rgb, faces[[subject]]).embedding[0])
            continue
        counts["similar_second_face"] += 1
        if subject is None:
            counts["still_refused"] += 1
            continue
        counts["enrolled_by_centre"] += 1
        crowded.append((name, analyzer.embed(rgb, faces[[subject]]).embedding[0]))
    # is the face taken the filed person? compared with the mean of their clear photos, at the 1:1 point
    threshold = analyzer.threshold
    checked = same = 0
    for name, emb in crowded:
        refs = single.get(name)
        if not refs:
            continue
        mean = np.mean(refs, axis=0)
        checked += 1
        same += float(emb @ (mean / np.linalg.norm(mean))) >= threshold
    counts.update({"enrolled_checkable": checked, "enrolled_same_person": same})
    print(counts)
    write_result("framing", {"counts": counts, "threshold": threshold, "machine": machine_info()},
                 out_dir=args.out, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
