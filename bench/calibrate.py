"""Calibrate the 1:1 verification threshold of an embedding model on the shared photos.

    .venv/bin/python bench/calibrate.py [--data ../shared/data/faces] [--model dlib-resnet-v1]

Embeds the largest face of every single-person photo in both data sets, scores
every pair by cosine similarity, and reports the threshold with the best
accuracy over all pairs (halfway between neighbouring scores), the equal-error
threshold, and each set's accuracy at the chosen threshold, so a reader can see
how well it transfers from one set to the other. The chosen value is what
``stream/models.py`` ships as the model's ``threshold``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine_info, write_result  # noqa: E402
from facestream.trainer.metrics import best_accuracy, equal_error_rate, roc_auc, roc_curve  # noqa: E402

SETS = ("deepface_celebs", "face_recognition_examples")


def embed_set(analyzer, folder: Path) -> tuple[list[str], list[str], np.ndarray]:
    from facestream.stream.engine.imageio import load_image

    with open(folder / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids, paths, embs = [], [], []
    for row in rows:
        path = folder / row["relative_path"]
        faces, _ = analyzer.largest_face(load_image(path), str(path))
        ids.append(f"{folder.name}/{row['identity']}")
        paths.append(str(path.relative_to(folder.parent)))
        embs.append(faces.embedding[0])
    return ids, paths, np.stack(embs)


def pair_scores(embs: np.ndarray, ids: list[str], mask: np.ndarray | None = None):
    i, j = np.triu_indices(len(ids), k=1)
    if mask is not None:
        keep = mask[i] & mask[j]
        i, j = i[keep], j[keep]
    labels = np.array([ids[a] == ids[b] for a, b in zip(i, j, strict=True)])
    return np.einsum("nd,nd->n", embs[i], embs[j]), labels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces"))
    p.add_argument("--model", default="dlib-resnet-v1")
    args = p.parse_args(argv)

    from facestream.stream.config import load_config
    from facestream.stream.engine.analyzer import FaceAnalyzer

    info = machine_info()  # before the run, so its load average is the machine's, not the benchmark's
    analyzer = FaceAnalyzer(load_config(overrides={"embedder.model": args.model}))
    ids, paths, embs, set_of = [], [], [], []
    for name in SETS:
        i, pth, e = embed_set(analyzer, Path(args.data) / name)
        ids += i
        paths += pth
        embs.append(e)
        set_of += [name] * len(i)
    embs = np.concatenate(embs)
    set_of = np.array(set_of)

    scores, labels = pair_scores(embs, ids)
    accuracy, threshold = best_accuracy(scores, labels)
    roc = roc_curve(scores, labels)
    per_set = {}
    for name in SETS:
        s, lab = pair_scores(embs, ids, set_of == name)
        set_acc, set_thr = best_accuracy(s, lab)
        per_set[name] = {
            "pairs": int(len(s)),
            "accuracy_at_chosen_threshold": float(((s >= threshold) == lab).mean()),
            "own_best_threshold": set_thr,
            "own_best_accuracy": set_acc,
        }
    wrong = np.nonzero((scores >= threshold) != labels)[0]
    i, j = np.triu_indices(len(ids), k=1)
    result = {
        "machine": info,
        "model": analyzer.model_id,
        "photos": len(ids),
        "pairs": int(len(scores)),
        "genuine_pairs": int(labels.sum()),
        "threshold": round(threshold, 4),
        "accuracy": accuracy,
        "errors": int(len(wrong)),
        "roc_auc": roc_auc(roc),
        "eer": equal_error_rate(roc),
        "genuine_similarity_median": float(np.median(scores[labels])),
        "impostor_similarity_median": float(np.median(scores[~labels])),
        "per_set": per_set,
        "misses": [
            {"a": paths[i[k]], "b": paths[j[k]], "same": bool(labels[k]), "similarity": round(float(scores[k]), 4)}
            for k in wrong
        ],
    }
    write_result("calibrate", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
