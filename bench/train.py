"""Training throughput (images/s) and evaluation cost (ms per 1,000 pairs).

    .venv/bin/python bench/train.py                      # CPU (and CUDA when torch sees a GPU)
    .venv/bin/python bench/train.py --batch 32 --repeats 5 --device cuda

Training: one optimisation step = augmentation + forward + ArcFace head + backward
+ AdamW, the same code path as ``facestream train``, for the dlib ResNet fully
trainable, the dlib ResNet frozen up to stage3, and small_net from scratch.
Reported: median seconds per step and images/s = batch / median. Chips are
pseudo-random pixels (the cost does not depend on the face).

Evaluation: verification metrics (pair scores, ROC, AUC, EER, TAR@FAR, best
accuracy) and identification on 128-d embeddings, reported per 1,000 pairs; the
embedding cost per image is in bench/embed.py.
Results go to ``bench/results/train-<machine>.json`` (see bench/common.py).

``--degraded-lfw``: can fine-tuning win? The calibration set (``../shared/data/calibration/lfw``)
degraded the way far-away CCTV faces are: each aligned chip shrunk so the face is 40-64 px wide
and blown up again, blurred, JPEG-compressed (quality 25-55) and, half of the time, grey. People
are split by the trainer's own hash buckets; ``facestream train``'s code (train_embedder: the
dlib ResNet, ArcFace, validation-chosen epoch and threshold, MLflow, the champion rule) fine-tunes
on the training people's degraded chips (the same degradation, plus the usual augmentation) and
reports the fine-tuned and the pretrained model on the test people: ROC AUC, TAR at the FARs the
pair count supports, identification top-1. ``--train-people`` caps the training people (CPU time).
Results: ``bench/results/train-degraded-lfw-<machine>.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_info, summarize, time_calls, write_result  # noqa: E402

CASES = (("dlib_resnet", None), ("dlib_resnet", "stage3"), ("small_net", None))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16, help="chips per training step")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per case (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per case first")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CPU, plus CUDA when present")
    p.add_argument("--eval-images", type=int, default=2000, help="embeddings in the evaluation benchmark")
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    p.add_argument("--degraded-lfw", action="store_true", help="fine-tune on degraded LFW and compare (see above)")
    p.add_argument("--lfw", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data"
                   / "calibration" / "lfw" / "images", help="the LFW calibration images")
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (--degraded-lfw)")
    p.add_argument("--train-people", type=int, default=0, help="most training people used, 0 = all (--degraded-lfw)")
    p.add_argument("--lr", type=float, default=None, help="backbone learning rate (train.lr; --degraded-lfw)")
    p.add_argument("--freeze", default=None, help="freeze up to this stage (train.freeze; --degraded-lfw)")
    p.add_argument("--name", default="train-degraded-lfw", help="results file name (--degraded-lfw)")
    return p.parse_args(argv)


def degrade(chip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A chip as a far-away CCTV camera would give it: face 40-64 px wide, blur, JPEG, often grey."""
    import cv2

    size = chip.shape[0]
    face = size / 1.5  # the dlib chip: padding 0.25 on each side
    scale = rng.uniform(40, 64) / face
    small = cv2.resize(chip, (max(8, round(size * scale)),) * 2, interpolation=cv2.INTER_AREA)
    out = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.2))
    ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 56))])
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    if rng.random() < 0.5:
        grey = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2GRAY)
        out = np.repeat(grey[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


def bench_degraded_lfw(args) -> dict:
    import tempfile
    import time

    from facestream.stream.config import load_config
    from facestream.trainer.data import bucket, chip_analyzer, load_chip_set
    from facestream.trainer.train import train_embedder

    t0 = time.perf_counter()
    config = load_config(overrides={"train.epochs": args.epochs, "train.batch_size": 32, "train.seed": 0,
                                    "train.device": "auto", "train.lr": args.lr, "train.freeze": args.freeze},
                         env={})
    chips = load_chip_set(args.lfw, chip_analyzer(config), progress=True)
    t_chips = time.perf_counter() - t0
    rng = np.random.default_rng(7)
    degraded = chips.subset(np.ones(len(chips), bool))
    degraded.chips = np.stack([degrade(c, rng) for c in chips.chips])
    # CPU time: keep every held-out person, and at most --train-people of the others (by hash, stable)
    tc = config.train
    held = {n for n in degraded.names if bucket(tc.seed, n) < tc.test_fraction + tc.val_fraction}
    others = sorted((n for n in degraded.names if n not in held), key=lambda n: bucket(tc.seed + 1, n))
    keep_names = held | set(others[:args.train_people] if args.train_people else others)
    keep = np.array([degraded.names[k] in keep_names for k in degraded.labels.tolist()], bool)
    data = degraded.subset(keep)
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        result = train_embedder(data, config, tracking_uri=f"sqlite:///{tmp}/mlflow.db", out_dir=Path(tmp) / "models",
                                progress=True)
        t_train = time.perf_counter() - t1
        best_epoch = _best_epoch(result)
    keys = ("auc", "eer", "tar_far1e-1", "tar_far1e-2", "tar_far1e-3", "top1", "top5", "threshold",
            "far_at_threshold", "frr_at_threshold", "pairs_genuine", "pairs_impostor")
    fine = {k: result.metrics[k] for k in keys if k in result.metrics}
    pre = {k: result.pretrained_metrics[k] for k in keys if k in result.pretrained_metrics}
    return {
        "data": str(args.lfw), "degradation": "face 40-64 px wide and back, blur sigma 0.4-1.2, JPEG q25-55, "
                                              "grey half the time (seeded, per chip)",
        "images": len(data), "people": len(data.names), "epochs": args.epochs, "train_people_cap": args.train_people,
        "lr": args.lr, "freeze": args.freeze, "best_epoch": best_epoch,
        "split_people": {s: n for s, n in zip(("train", "val", "test"), _split_counts(result), strict=False)},
        "pretrained": pre, "fine_tuned": fine,
        "delta": {k: fine[k] - pre[k] for k in fine if k in pre and not k.startswith("pairs")},
        "champion_decision": result.decision, "promoted": result.promoted, "best_epoch_history": result.history,
        "seconds": {"chips": round(t_chips, 1), "train_and_evaluate": round(t_train, 1)},
        "skipped_images": len(chips.report.skipped),
    }


def _best_epoch(result) -> int | None:
    import mlflow

    try:
        return int(mlflow.MlflowClient().get_run(result.run_id).data.params["best_epoch"])
    except Exception:  # noqa: BLE001 - only a label in the JSON
        return None


def _split_counts(result) -> list[int]:
    ids = (result.spec.extra or {}).get("identities", {})
    return [len(ids.get(s, [])) for s in ("train", "val", "test")]


def bench_training(device: str, batch: int, repeats: int, warmup: int) -> list[dict]:
    import torch

    from facestream.stream.engine.networks import create_model
    from facestream.trainer.augment import AugmentConfig, augment
    from facestream.trainer.losses import make_loss

    rng = np.random.default_rng(0)
    chips = torch.from_numpy(rng.integers(0, 256, (batch, 150, 150, 3), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 10, batch))
    rows = []
    for arch, freeze in CASES:
        model = create_model(arch, pretrained=arch == "dlib_resnet").to(device).train()
        if freeze:
            model.freeze_up_to(freeze)
        head = make_loss("arcface", 128, 10).to(device)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad] + list(head.parameters()),
                                lr=1e-5)
        mean = torch.tensor((122.782, 117.001, 104.298), device=device).view(1, 3, 1, 1)
        x0, y = chips.to(device), labels.to(device)

        def step(model=model, head=head, opt=opt, mean=mean, x0=x0, y=y):
            x = augment(x0.permute(0, 3, 1, 2).float(), AugmentConfig())
            loss = head(model((x - mean) / 256.0), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device == "cuda":
                torch.cuda.synchronize()

        stats = summarize(time_calls(step, repeats, warmup=warmup))
        row = {"device": device, "model": arch, "freeze": freeze, "batch": batch, **stats,
               "images_per_s": batch / (stats["median_ms"] / 1000.0)}
        print(f"{device:5s} {arch:12s} freeze={freeze!s:7s} batch {batch}: {row['images_per_s']:.1f} images/s "
              f"({stats['median_ms']:.0f} ms/step)", flush=True)
        rows.append(row)
    return rows


def bench_eval(n_images: int, repeats: int) -> dict:
    from facestream.trainer.evaluate import evaluate

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(n_images // 4), 4)
    emb = rng.normal(size=(len(labels), 128)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    n_pairs = len(labels) * (len(labels) - 1) // 2
    stats = summarize(time_calls(lambda: evaluate(emb, labels, max_pairs=None), repeats, warmup=0))
    out = {"images": len(labels), "pairs": n_pairs, **stats,
           "ms_per_1000_pairs": stats["median_ms"] / (n_pairs / 1000.0)}
    print(f"evaluation: {n_pairs} pairs in {stats['median_ms']:.0f} ms = {out['ms_per_1000_pairs']:.4f} ms per "
          f"1,000 pairs", flush=True)
    return out


def bench_devices(name: str) -> list[str]:
    """auto: CPU, plus CUDA when torch sees a GPU; cpu or cuda: that one (the trainer's rules and errors)."""
    from facestream.trainer.train import pick_device

    picked = pick_device(name).type
    return ["cpu", "cuda"] if name == "auto" and picked == "cuda" else [picked]


def main(argv: list[str] | None = None) -> int:
    from facestream.errors import FacestreamError

    args = parse_args(argv)
    if args.degraded_lfw:
        write_result(args.name, {**bench_degraded_lfw(args), "machine": machine_info()}, out_dir=args.out)
        return 0
    try:
        devices = bench_devices(args.device)
    except FacestreamError as exc:
        raise SystemExit(f"{exc.problem} Use --device cpu or auto.") from None
    info = machine_info()
    rows = []
    for dev in devices:
        rows += bench_training(dev, args.batch if dev == "cpu" else max(args.batch, 64), args.repeats, args.warmup)
    payload = {"training": rows, "evaluation": bench_eval(args.eval_images, max(args.repeats, 3)), "machine": info}
    write_result("train", payload, out_dir=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
