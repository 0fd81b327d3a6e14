"""Face detection by face size, mode and engine: recall, false detections and ms per frame in 1080p and 4K.

    .venv/bin/python bench/detect.py                          # every mode and engine, 1080p and 4K
    .venv/bin/python bench/detect.py --engines onnxruntime --modes live --scenes 2

Faces are real: one photo each of people from the LFW calibration set (``--lfw``,
a seeded sample; none of them is in the shared test photos), pasted with their head
and some shoulders, edges feathered (``bench/scenes.py``), six per frame at random
places over a generated face-free background, at face widths (detector box) of 24
to 256 px. A face counts as found when a detection overlaps its truth box with
IoU >= 0.3; a detection overlapping no face is a false one.

Modes:

* ``photo``: ``FaceDetector.detect``, one call: both model ranges on the whole
  image, and tiles where it is larger than a tile (what ``detect``, ``identify``,
  enrolment, the demo and the trainer use). Photos larger than ``detector.max_side``
  are shrunk to it first, so a 4K photo's faces are searched at half their size.
* ``whole``: the full-range model on the whole frame only, once per frame (the
  live default before the scheduler; for reference).
* ``live``: the live scheduler (``LiveDetector`` and the tracker, as the pipeline
  runs them) over 1 s of the scene as 30 fps frames, then ``--after`` frames more;
  recall is over those last frames (a face present 1 s or more), ms per frame is
  the median over every frame (sweep, crops and confirmations amortized).
* ``classic`` (``--classic``): dlib's HOG detector upsampled once, what the
  face_recognition library does by default (1080p only: ~0.7 s a frame here).

Close-ups: every sampled face cut so that it fills 50, 70, 85 and 100% of a 480 px
square picture (a selfie, a kiosk), in ``photo`` and ``whole`` modes.

Engines: ``onnxruntime`` and ``torch`` (our port of BlazeFace, on the GPU where there
is one), ``mediapipe`` (MediaPipe's own graph, the reference) and ``tensorrt`` where
it imports. Results: ``bench/results/detect-<machine>.json``.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_info, write_result  # noqa: E402
from bench.scenes import background, closeup, face_sources, matches, scene  # noqa: E402
from facestream.stream.config import DetectorConfig, TrackingConfig  # noqa: E402
from facestream.stream.engine.detect import FaceDetector, View  # noqa: E402
from facestream.stream.engine.faces import Faces  # noqa: E402
from facestream.stream.live.scheduler import LiveDetector  # noqa: E402
from facestream.stream.live.tracker import Tracker  # noqa: E402

log = logging.getLogger("bench.detect")

LFW = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "calibration" / "lfw" / "images"
SIZES = (24, 32, 40, 48, 64, 96, 128, 192, 256)
RESOLUTIONS = {"1920x1080": (1920, 1080), "3840x2160": (3840, 2160)}
FILLS = (0.5, 0.7, 0.85, 1.0)
FPS = 30.0
MODES = ("photo", "whole", "live")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", default=None,
                   help="comma list of onnxruntime, torch, mediapipe, tensorrt (default: all that load here)")
    p.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    p.add_argument("--resolutions", default=",".join(RESOLUTIONS), help="comma list of " + ", ".join(RESOLUTIONS))
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="face widths in px")
    p.add_argument("--scenes", type=int, default=3, help="frames of 6 faces per size and resolution")
    p.add_argument("--after", type=int, default=6, help="live: frames measured after the first second")
    p.add_argument("--faces", type=int, default=120, help="LFW people sampled (one photo each)")
    p.add_argument("--closeups", type=int, default=120, help="faces cut into close-ups (x4 fills); 0 = none")
    p.add_argument("--background", type=int, default=6, help="face-free frames per resolution (false detections)")
    p.add_argument("--classic", action="store_true", help="also dlib's HOG detector (1080p)")
    p.add_argument("--device", default="auto", help="detector.device for the ported engines")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a detector setting for every engine, e.g. max_side=3840 (repeatable)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--lfw", type=Path, default=LFW, help="identity folders to take faces from")
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    return p.parse_args(argv)


def sample_faces(root: Path, n: int, seed: int) -> list[tuple[str, Path]]:
    """One photo each of ``n`` people, a seeded sample."""
    people = sorted(d for d in root.iterdir() if d.is_dir())
    rng = random.Random(seed)
    rng.shuffle(people)
    out = []
    for d in people[:n]:
        photos = sorted(d.glob("*.jpg"))
        if photos:
            out.append((d.name, rng.choice(photos)))
    return out


def available_engines() -> list[str]:
    names = ["onnxruntime", "torch", "mediapipe"]
    try:
        import tensorrt  # noqa: F401

        names.append("tensorrt")
    except ImportError:
        pass
    return names


class Modes:
    """Each mode's per-frame call for one engine; ``live`` runs a scene's frames through the scheduler."""

    def __init__(self, engine: str, device: str, after: int, overrides: dict[str, str]):
        self.cfg = DetectorConfig.model_validate({**overrides, "engine": engine, "device": device})
        self.detector = FaceDetector(self.cfg)
        self.after = after

    def close(self) -> None:
        self.detector.close()

    def run(self, mode: str, frame: np.ndarray) -> tuple[Faces, list[float]]:
        """The faces of ``frame`` the mode reports (the last frame's, live) and the seconds each call took."""
        if mode == "photo":
            t0 = time.perf_counter()
            faces = self.detector.detect(frame)
            return faces, [time.perf_counter() - t0]
        if mode == "whole":
            h, w = frame.shape[:2]
            b = 0.1 * max(w, h)
            t0 = time.perf_counter()
            raw = self.detector.search(frame, [View("full", (-b, -b, w + b, h + b))], [True])
            faces = FaceDetector.to_faces(raw, w, h)
            return faces, [time.perf_counter() - t0]
        return self._live(frame)

    def _live(self, frame: np.ndarray) -> tuple[Faces, list[float]]:
        live, tracker = LiveDetector(self.detector, self.cfg), Tracker(TrackingConfig())
        bgr = frame[..., ::-1]
        times, results = [], []
        for i in range(int(FPS) + self.after):
            t0 = time.perf_counter()
            expected = [t.predict(i) for t in tracker.tracks]
            faces = live.detect(bgr, frame, expected, FPS)
            times.append(time.perf_counter() - t0)
            tracker.update(faces, i, i / FPS)
            results.append(faces)
        return results, times  # type: ignore[return-value]


class Classic:
    """dlib's HOG face detector upsampled once (face_recognition's default ``model="hog"``)."""

    def __init__(self) -> None:
        import dlib

        self.hog = dlib.get_frontal_face_detector()

    def run(self, mode: str, frame: np.ndarray) -> tuple[Faces, list[float]]:
        t0 = time.perf_counter()
        rects = self.hog(frame, 1)
        dt = time.perf_counter() - t0
        xyxy = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32).reshape(-1, 4)
        return Faces(xyxy=xyxy, score=np.ones(len(xyxy), np.float32), kps=np.zeros((len(xyxy), 6, 2), np.float32)), [dt]

    def close(self) -> None:
        pass


def tally(truth: np.ndarray, result) -> tuple[int, int, int]:
    """(found, faces, false detections) of one frame's result, or of each frame of a live run."""
    frames = result if isinstance(result, list) else [result]
    found = total = false = 0
    for faces in frames:
        hit, n_false = matches(truth, faces.xyxy)
        found += int(hit.sum())
        total += len(truth)
        false += n_false
    return found, total, false


def measure(runner, mode: str, scenes_by: dict, backgrounds: dict, after: int) -> dict:
    """Recall by size, false detections per frame and ms per frame of one mode, per resolution."""
    out = {}
    for res, by_size in scenes_by.items():
        recall, ms, false, frames = {}, [], 0, 0
        for size, scenes in by_size.items():
            found = total = 0
            for sc in scenes:
                result, times = runner.run(mode, sc.frame)
                if mode == "live":
                    result = result[-after:]  # the frames after the first second
                f, n, fa = tally(sc.boxes, result)
                found, total, false = found + f, total + n, false + fa
                frames += len(result) if isinstance(result, list) else 1
                ms += times
            recall[size] = round(found / total, 4) if total else None
        bg_false = 0
        bg_frames = 0
        for frame in backgrounds[res]:
            result, times = runner.run(mode, frame)
            if mode == "live":
                result = result[-after:]
            _, _, fa = tally(np.zeros((0, 4), np.float32), result)
            bg_false += fa
            bg_frames += len(result) if isinstance(result, list) else 1
        out[res] = {
            "recall_by_size": recall,
            "false_per_frame": round(false / max(1, frames), 4),
            "false_per_face_free_frame": round(bg_false / max(1, bg_frames), 4),
            "ms_per_frame_median": round(statistics.median(ms) * 1000, 2),
            "ms_per_frame_mean": round(statistics.fmean(ms) * 1000, 2),
        }
        print(f"  {mode:7s} {res:10s} " + " ".join(f"{s}:{r:.2f}" for s, r in recall.items() if r is not None)
              + f"  false/frame {out[res]['false_per_frame']:.3f}  {out[res]['ms_per_frame_median']:.1f} ms/frame")
    return out


def closeup_recall(runner, mode: str, cuts: list[tuple[float, np.ndarray, np.ndarray]]) -> dict:
    by_fill = {f: [0, 0] for f in FILLS}
    ms = []
    for fill, img, box in cuts:
        faces, times = runner.run(mode, img)
        hit, _ = matches(box[None], faces.xyxy)
        by_fill[fill][0] += int(hit[0])
        by_fill[fill][1] += 1
        ms += times
    found = sum(f for f, _ in by_fill.values())
    total = sum(n for _, n in by_fill.values())
    row = {"recall": round(found / max(1, total), 4), "pictures": total,
           "recall_by_fill": {f: round(a / max(1, b), 4) for f, (a, b) in by_fill.items()},
           "ms_per_picture_median": round(statistics.median(ms) * 1000, 2) if ms else None}
    print(f"  {mode:7s} close-ups: recall {row['recall']:.4f} of {total} "
          + " ".join(f"{f}:{r:.3f}" for f, r in row["recall_by_fill"].items()))
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    machine = machine_info()
    engines = args.engines.split(",") if args.engines else available_engines()
    modes = args.modes.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    resolutions = {r: RESOLUTIONS[r] for r in args.resolutions.split(",")}

    # truth boxes from the photo-mode detector on each source photo (the same for every engine)
    with FaceDetector(DetectorConfig()) as ref:
        sources = face_sources(sample_faces(args.lfw, args.faces, args.seed), ref)
    print(f"{len(sources)} faces from {args.lfw}")
    rng = np.random.default_rng(args.seed)
    scenes_by = {res: {s: [scene(rng, sources, s, n=6, size=wh) for _ in range(args.scenes)] for s in sizes}
                 for res, wh in resolutions.items()}
    backgrounds = {res: [background(rng, *wh) for _ in range(args.background)] for res, wh in resolutions.items()}
    cuts = [(f, *closeup(src, f)) for src in sources[: args.closeups] for f in FILLS]

    results = []
    for engine in engines:
        try:
            runner = Modes(engine, args.device, args.after, dict(kv.split("=", 1) for kv in args.overrides))
        except Exception as exc:  # an engine this machine lacks is reported, not fatal
            print(f"{engine}: not available ({exc})")
            results.append({"engine": engine, "error": str(exc)})
            continue
        print(f"{engine} ({runner.detector.engine.name})")
        row: dict = {"engine": engine, "runs_as": runner.detector.engine.name, "modes": {}}
        for mode in modes:
            row["modes"][mode] = measure(runner, mode, scenes_by, backgrounds, args.after)
            if mode in ("photo", "whole") and cuts:
                row["modes"][mode]["closeups"] = closeup_recall(runner, mode, cuts)
        runner.close()
        results.append(row)
    if args.classic:
        print("classic (dlib HOG, upsample 1)")
        hd = {r: v for r, v in scenes_by.items() if r == "1920x1080"}
        results.append({"engine": "dlib-hog", "modes": {"classic": measure(Classic(), "classic", hd,
                                                                          {r: backgrounds[r] for r in hd}, 0)}})

    write_result("detect", {
        "faces": {"source": str(args.lfw), "people": len(sources), "per_frame": 6, "scenes_per_size": args.scenes,
                  "seed": args.seed, "found_iou": 0.3},
        "sizes_px": sizes, "closeup_fills": list(FILLS), "closeups": len(cuts),
        "detector_settings": args.overrides, "results": results, "machine": machine,
    }, out_dir=args.out, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
