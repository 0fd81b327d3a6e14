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
    return p.parse_args(argv)


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
