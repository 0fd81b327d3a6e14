"""Liveness on real video and rendered attacks: APCER, BPCER, time to a verdict, cost per track.

    .venv/bin/python bench/liveness.py               # every single-face photo as an attack source
    .venv/bin/python bench/liveness.py --photos 6    # a quick look

ISO/IEC 30107-3 names: **APCER**, the share of attack presentations accepted as
live (here: a track that is ever judged ``live``); **BPCER**, the share of bona
fide presentations rejected (here: a real track ever judged ``spoof``). Beside
them: the share of attacks flagged ``spoof`` within 2 s of the track appearing
(the issue's target: >= 0.95), the share of real tracks judged ``live`` within
2 s, and the median time to each verdict.

* **Bona fide**: every face track of every real video the project has (the
  Hamilton clip: people turning, talking, singing), tracks of at least 15 frames.
* **Attacks** (``bench/attacks.py``): each single-face photo of the shared
  data printed flat, bent, and shown on a phone, held up and moved for 3 s at
  30 fps, faces 50-150 px in 640x360, with blur, noise and JPEG; and the same
  prints moved gently (half the motion) to show how much motion a verdict needs.

Faces are found by the photo-mode detector on every frame and linked by box
overlap; each track's face mesh feeds :class:`TrackLiveness`, exactly as the live
frame step does. Results: ``bench/results/liveness-<machine>.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.attacks import KINDS, Motion, render_attack  # noqa: E402
from bench.common import machine_info, write_result  # noqa: E402
from bench.scenes import face_sources  # noqa: E402
from facestream.stream.engine.detect import FaceDetector, box_iou  # noqa: E402
from facestream.stream.engine.face_mesh import PRESENT, FaceMesher  # noqa: E402
from facestream.stream.engine.liveness import TrackLiveness  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "faces"
FPS = 30.0
DEADLINE_S = 2.0
MIN_TRACK = 15


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=int, default=0, help="attack source photos (0: every single-face photo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    p.add_argument("--dump", type=Path, default=None, help="also save every track's meshes here (.npz)")
    return p.parse_args(argv)


def videos() -> list[Path]:
    return sorted(p for ext in ("mp4", "avi", "mov", "mkv", "webm") for p in SHARED.rglob(f"*.{ext}"))


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or FPS
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames, float(fps)


class _Run:
    """One face track being judged: its verdicts over time."""

    def __init__(self, frame: int, box: np.ndarray):
        self.first, self.last, self.box = frame, frame, box
        self.liveness = TrackLiveness()
        self.frames = 0
        self.first_live: int | None = None
        self.first_spoof: int | None = None
        self.meshes: list[np.ndarray] = []  # kept for --dump (replaying other settings without the models)

    def summary(self, fps: float) -> dict[str, Any]:
        def s(f: int | None) -> float | None:
            return None if f is None else round((f - self.first) / fps, 3)

        return {"frames": self.frames, "live_after_s": s(self.first_live), "spoof_after_s": s(self.first_spoof),
                "final": self.liveness.verdict.to_json(), "meshes": self.meshes}


def judge(frames: list[np.ndarray], fps: float, detector: FaceDetector, mesher: FaceMesher,
          cost: list[float]) -> list[dict[str, Any]]:
    """Every face track of ``frames`` with its liveness verdicts (tracks shorter than MIN_TRACK left out)."""
    runs: list[_Run] = []
    for t, rgb in enumerate(frames):
        faces = detector.detect(rgb)
        if not len(faces):
            continue
        t0 = time.perf_counter()
        mesh = mesher(rgb, faces.xyxy, faces.kps)
        mesh_ms = (time.perf_counter() - t0) * 1000 / len(faces)
        for i in range(len(faces)):
            alive = [r for r in runs if t - r.last <= 3]
            ious = [float(box_iou(faces.xyxy[i:i + 1], r.box[None])[0, 0]) for r in alive]
            run = alive[int(np.argmax(ious))] if ious and max(ious) > 0.3 else None
            if run is None:
                run = _Run(t, faces.xyxy[i])
                runs.append(run)
            run.last, run.box = t, faces.xyxy[i]
            if mesh.presence[i] < PRESENT:
                continue
            t1 = time.perf_counter()
            verdict = run.liveness.add(mesh.points[i])
            run.meshes.append(mesh.points[i, :, :2].astype(np.float32))
            cost.append(mesh_ms + (time.perf_counter() - t1) * 1000)
            run.frames += 1
            if verdict.state == "live" and run.first_live is None:
                run.first_live = t
            if verdict.state == "spoof" and run.first_spoof is None:
                run.first_spoof = t
    return [r.summary(fps) for r in runs if r.frames >= MIN_TRACK]


def rates(tracks: list[dict[str, Any]], attack: bool) -> dict[str, Any]:
    n = len(tracks)
    if not n:
        return {"tracks": 0}
    live = [t["live_after_s"] for t in tracks if t["live_after_s"] is not None]
    spoof = [t["spoof_after_s"] for t in tracks if t["spoof_after_s"] is not None]
    out: dict[str, Any] = {
        "tracks": n,
        "ever_live": round(len(live) / n, 4),
        "ever_spoof": round(len(spoof) / n, 4),
        "live_within_2s": round(sum(v <= DEADLINE_S for v in live) / n, 4),
        "spoof_within_2s": round(sum(v <= DEADLINE_S for v in spoof) / n, 4),
        "unknown_at_end": round(sum(t["final"]["state"] == "unknown" for t in tracks) / n, 4),
        "median_s_to_live": round(statistics.median(live), 3) if live else None,
        "median_s_to_spoof": round(statistics.median(spoof), 3) if spoof else None,
    }
    out["APCER" if attack else "BPCER"] = out["ever_live"] if attack else out["ever_spoof"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    detector, mesher = FaceDetector(), FaceMesher()
    cost: list[float] = []
    genuine: list[dict[str, Any]] = []
    for video in videos():
        frames, fps = read_video(video)
        for t in judge(frames, fps, detector, mesher, cost):
            genuine.append({"video": video.name, **t})
    items = [(p.parent.name, p) for p in sorted(SHARED.rglob("*"))
             if p.suffix.lower() in (".jpg", ".jpeg", ".png") and "_nonsingle" not in p.parts]
    sources = face_sources(items, detector, limit=args.photos or None)
    attacks: dict[str, list[dict[str, Any]]] = {k: [] for k in (*KINDS, "print_gentle")}
    for src in sources:
        for kind in (*KINDS, "print_gentle"):
            motion = Motion.random(rng, strength=0.5 if kind == "print_gentle" else 1.0)
            clip = list(render_attack(src, kind.split("_")[0], rng, face_px=float(rng.uniform(50, 150)),
                                      seconds=3.0, fps=FPS, motion=motion))
            for t in judge(clip, FPS, detector, mesher, cost)[:1]:  # the held-up face (one per clip)
                attacks[kind].append({"photo": src.path.name, **t})
    if args.dump is not None:
        tracks = [("genuine", t) for t in genuine] + [(k, t) for k, v in attacks.items() for t in v]
        np.savez_compressed(args.dump, kinds=np.array([k for k, _ in tracks]),
                            **{f"t{i}": np.stack(t["meshes"]) for i, (_, t) in enumerate(tracks)})
    for t in genuine + [t for v in attacks.values() for t in v]:
        del t["meshes"]
    result = {
        "bona_fide": rates(genuine, attack=False),
        "attacks": {k: rates(v, attack=True) for k, v in attacks.items()},
        "attacks_all_full_motion": rates([t for k in KINDS for t in attacks[k]], attack=True),
        "cost_ms_per_face_sample": {"median": round(statistics.median(cost), 2) if cost else None,
                                    "p90": round(float(np.percentile(cost, 90)), 2) if cost else None,
                                    "note": "face mesh (torch, this machine) + evidence update, per face per frame"},
        "sources": len(sources), "videos": [v.name for v in videos()],
        "genuine_tracks": genuine, "attack_tracks": attacks,
        "machine": machine_info(),
    }
    write_result("liveness", result, out_dir=args.out, quiet=True)
    summary = {k: result[k] for k in ("bona_fide", "attacks", "attacks_all_full_motion", "cost_ms_per_face_sample")}
    import json

    print(json.dumps(summary, indent=2))
    return result


if __name__ == "__main__":
    main()
