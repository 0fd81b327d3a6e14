"""A door camera, live: faces of 40-200 px walk through a 1080p30 video, run through the live pipeline as a camera.

    .venv/bin/python bench/door.py                      # 60 s of 1080p30, on this machine
    .venv/bin/python bench/door.py --seconds 20 --size 3840x2160
    .venv/bin/python bench/door.py --seconds 30 --streams 1,4,8,16,32   # a GPU box: how many cameras it sustains
    .venv/bin/python bench/door.py --gallery 200                        # 200 enrolled from one photo, 60 walkers
    .venv/bin/python bench/door.py --gallery 1000 --walkers 30 --roster 30   # the camera's roster: 30 of 1,000

The video is generated (``bench/scenes.py``): real faces of people from the LFW
calibration set walk in from a side, cross part of the frame while their face
grows or shrinks between 40 and 200 px (towards or away from the camera), and
leave, about one every two seconds, over a face-free background; it is encoded
as H.264 (FFmpeg, as a camera streams). Each walker's identity is enrolled from
two *other* photos of them. The pipeline reads the file at its native pace
(``realtime``: a frame the pipeline is too slow for is dropped, as from a
camera), with the default configuration.

Reported:

* fps processed, frames dropped, latency p50/p99 (frame read to result);
* recall by face size over the frames where a face is in the picture, for faces
  present 1 s or more (a face counts as found when a reported box overlaps its
  truth box with IoU >= 0.3), and false detections per frame;
* the share of frames where an enrolled face of 56 px or more carries its right name (and a wrong
  one), and where a stranger's face (people never enrolled walk by too) carries any name;
* per walker, the time from entering to its first box and to its first right name (p50/p95);
* with ``--streams``, for each count: that many copies of the video run at once (one
  pipeline, detection and embedding batched across the cameras, on the GPU where
  there is one), fps of every stream, drops and latency, and whether the box
  sustained them (every stream at the camera's pace, at most 1% frames dropped);
  decoding alone is timed apart (``decode_ms_per_frame``), as it runs on the CPU.

With ``--gallery N`` the door serves a site: N people are enrolled from
``--enrol-photos`` (1) photo each, ``--walkers`` (60) of them and ``--strangers``
(30) never enrolled each walk by once, showing ``--views`` (2) *other* photos of
themselves in turn (a real walk gives a track several views), and the video lasts
as long as the parade. Reported per walker as well: named right (the name given
on most of its named frames is its own), named wrong, never named; strangers
given any name on any frame. ``--roster R`` scopes the camera to R people (the
walkers and others), as ``sources[].people`` does.

Results: ``bench/results/door-<W>x<H>[-gallery<N>...]-<machine>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_info, write_result  # noqa: E402
from bench.scenes import Walker, background, face_sources, iter_video, matches, parade, walkers  # noqa: E402
from facestream.gallery import open_store  # noqa: E402
from facestream.stream.config import SourceConfig, load_config  # noqa: E402
from facestream.stream.engine.analyzer import FaceAnalyzer  # noqa: E402
from facestream.stream.live.pipeline import Pipeline  # noqa: E402
from facestream.stream.recognition.enroll import Enroller, Photo  # noqa: E402
from facestream.stream.recognition.identify import open_matcher  # noqa: E402

log = logging.getLogger("bench.door")

LFW = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "calibration" / "lfw" / "images"
SIZE_BINS = (40, 48, 56, 64, 80, 96, 128, 160, 201)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="length of the video")
    p.add_argument("--size", default="1920x1080", help="frame size WxH")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--people", type=int, default=40, help="identities that walk by (enrolled)")
    p.add_argument("--strangers", type=int, default=12, help="identities that walk by, not enrolled")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lfw", type=Path, default=LFW, help="identity folders to take faces from")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    p.add_argument("--streams", default="1",
                   help="comma list: copies of the video run at once, each a camera (e.g. 1,2,4,8 on a GPU box)")
    p.add_argument("--keep", type=Path, default=None, help="keep the video and truth in this folder")
    site = p.add_argument_group("a site's gallery (--gallery N)")
    site.add_argument("--gallery", type=int, default=0, help="people enrolled (0: the walkers' people only)")
    site.add_argument("--enrol-photos", type=int, default=1, help="photos each person is enrolled from")
    site.add_argument("--walkers", type=int, default=60, help="enrolled people who walk by, once each")
    site.add_argument("--views", type=int, default=2, help="other photos each walker shows during its walk")
    site.add_argument("--roster", type=int, default=0, help="scope the camera to this many people (0: everyone)")
    site.add_argument("--per-second", type=float, default=0.75, help="walkers arriving per second")
    args = p.parse_args(argv)
    if args.gallery:
        args.strangers = 30 if "--strangers" not in (argv if argv is not None else sys.argv) else args.strangers
        if args.walkers > args.gallery or (args.roster and args.roster < args.walkers):
            p.error("--walkers must be at most --gallery, and at most --roster when there is one")
    return args


def encode(frames, path: Path, fps: float, size: tuple[int, int]) -> None:
    """Frames (RGB) to an H.264 file with FFmpeg (veryfast, CRF 23: what an IP camera sends)."""
    w, h = size
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(fps),
           "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for frame in frames:
        proc.stdin.write(np.ascontiguousarray(frame).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("ffmpeg failed to encode the video")


def people(root: Path, n: int, seed: int) -> list[tuple[str, list[Path]]]:
    """``n`` identities with three photos or more: (name, photos), shuffled by ``seed``."""
    folders = [d for d in sorted(root.iterdir()) if d.is_dir() and len(list(d.glob("*.jpg"))) >= 3]
    random.Random(seed).shuffle(folders)
    return [(d.name, sorted(d.glob("*.jpg"))) for d in folders[:n]]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is needed to encode the video (bash .ci/setup installs it)", file=sys.stderr)
        return 2
    w, h = (int(v) for v in args.size.lower().split("x"))
    counts = [int(v) for v in args.streams.split(",")]
    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="facestream-door-"))
    config = load_config(overrides=[f"gallery.url=sqlite:///{work / 'gallery.db'}", *args.overrides], env={})
    analyzer = FaceAnalyzer(config)
    rng = np.random.default_rng(args.seed)
    cast = site_cast(args, analyzer, rng, (w, h)) if args.gallery else door_cast(args, analyzer, rng, (w, h))
    seconds = max(wk.t1 for wk in cast.walk) + 1.0 if args.gallery else args.seconds  # a site: the parade
    bg = background(rng, w, h)
    truth: list[list[tuple[int, np.ndarray, float]]] = []
    video = work / "door.mp4"
    t0 = time.perf_counter()

    def frames():
        for _i, _t, frame, faces in iter_video(cast.walk, bg, args.fps, seconds):
            truth.append(faces)
            yield frame

    encode(frames(), video, args.fps, (w, h))
    print(f"video: {len(truth)} frames {w}x{h} with {len(cast.walk)} walkers, made in {time.perf_counter() - t0:.0f} s")

    store = open_store(config.gallery.url)
    t0 = time.perf_counter()
    report = Enroller(analyzer, store, progress=False).run([(name, photos, {}, None) for name, photos in cast.enrol])
    enrolled = set(report.people)
    print(f"enrolled {len(enrolled)} of {len(cast.enrol)} people in {time.perf_counter() - t0:.0f} s")
    matcher = open_matcher(analyzer, store, watch=False)

    decode = decode_ms(video)
    runs = []
    for n in counts:
        run = run_streams(config, analyzer, matcher, video, n, cast.roster)
        reports = [evaluate(truth, frames, cast.walk, args.fps, enrolled, cast.strangers)
                   for frames in run.pop("results").values()]
        run["recall_by_size_mean"] = {k: _mean([r["recall_by_size"][k] for r in reports])
                                      for k in reports[0]["recall_by_size"]}
        run["right_name_56px_plus_mean"] = _mean([r["right_name_56px_plus"] for r in reports])
        run["stranger_named_56px_plus_mean"] = _mean([r["stranger_named_56px_plus"] for r in reports])
        run["first_stream"] = reports[0]
        # a box sustains n streams when every one keeps the camera's pace (1% dropped frames at most)
        run["sustained"] = bool(min(run["fps_per_stream"].values()) >= 0.985 * args.fps
                                and run["dropped"] <= 0.01 * n * len(truth))
        runs.append(run)
        print(f"{n} stream(s): fps per stream {min(run['fps_per_stream'].values()):.2f}-"
              f"{max(run['fps_per_stream'].values()):.2f}, dropped {run['dropped']}, "
              f"latency p50 {run['latency_ms']['p50']} ms, sustained {run['sustained']}")
    matcher.close()
    store.close()
    report = dict(runs[0]["first_stream"])
    report.update({k: runs[0][k] for k in ("frames_processed", "fps", "wall_s", "latency_ms", "timings_ms_p50",
                                           "dropped")})
    sustained = [r["streams"] for r in runs if r["sustained"]]
    video_info = {"size": [w, h], "fps": args.fps, "seconds": round(seconds, 1), "walkers": len(cast.walk),
                  "people": len(enrolled), "strangers": sum(wk.source.identity not in enrolled for wk in cast.walk),
                  "seed": args.seed}
    if args.gallery:
        video_info.update({"gallery": args.gallery, "enrol_photos": args.enrol_photos, "views": args.views,
                           "roster": len(cast.roster) if cast.roster else None})
    result = {"bench": "door", "machine": machine, "video": video_info,
              "config": args.overrides, "decode_ms_per_frame": decode, "results": report,
              "streams": [{k: v for k, v in r.items() if k != "first_stream"} for r in runs],
              "most_streams_sustained": max(sustained) if sustained else 0}
    print(json.dumps(report, indent=1))
    write_result(f"door-{w}x{h}{result_suffix(args)}", result, args.out)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(video, args.keep / "door.mp4")
    shutil.rmtree(work, ignore_errors=True)
    return 0


@dataclass
class Cast:
    """Who is enrolled (name, photos), who walks by, and the camera's roster (None: everyone)."""

    enrol: list[tuple[str, list[Photo]]]
    walk: list[Walker]
    roster: list[str] | None = None
    strangers: set[str] | None = None  # never enrolled (a site; None: whoever is not enrolled)


def door_cast(args: argparse.Namespace, analyzer: FaceAnalyzer, rng: np.random.Generator,
              size: tuple[int, int]) -> Cast:
    """The small door: ``--people`` enrolled from two photos, walking by at random (again and again), with
    ``--strangers``; each walker shows its last photo."""
    everyone = people(args.lfw, args.people + args.strangers, args.seed)
    crowd = everyone[:args.people]
    sources = face_sources([(name, photos[-1]) for name, photos in everyone], analyzer.detector)
    walk = walkers(rng, sources, args.seconds, size)
    return Cast([(name, [Photo.from_path(p) for p in photos[:2]]) for name, photos in crowd], walk)


def site_cast(args: argparse.Namespace, analyzer: FaceAnalyzer, rng: np.random.Generator,
              size: tuple[int, int]) -> Cast:
    """A site: ``--gallery`` people, the walkers enrolled from ``--enrol-photos`` each (the others from as
    many as they have, up to that); ``--walkers`` of them and ``--strangers`` walk by once, each showing
    ``--views`` photos that were not enrolled."""
    m, v = args.enrol_photos, args.views
    folders = [d for d in sorted(args.lfw.iterdir()) if d.is_dir()]
    random.Random(args.seed).shuffle(folders)
    photos = {d.name: sorted(d.glob("*.jpg")) for d in folders}
    walking = [d for d in photos if len(photos[d]) >= m + v][:args.walkers]
    strangers = [d for d in photos if d not in walking and len(photos[d]) >= v][:args.strangers]
    # the rest of the gallery: up to m photos each (LFW has too few people with many photos for 1,000)
    fillers = [d for d in photos if d not in walking and d not in strangers]
    fillers = fillers[:args.gallery - len(walking)]
    if len(walking) < args.walkers or len(fillers) < args.gallery - len(walking):
        raise SystemExit(f"{args.lfw} has too few people for this cast: {len(walking)} with {m + v}+ photos, "
                         f"{len(walking) + len(fillers)} to enrol")
    shown = []
    for name, first in [(d, m) for d in walking] + [(d, 0) for d in strangers]:
        views = face_sources([(name, p) for p in photos[name][first:]], analyzer.detector, limit=v)
        if views:
            shown.append(views)
    walk = parade(rng, shown, size, per_second=args.per_second)
    enrol = [(d, [Photo.from_path(p) for p in photos[d][:m]]) for d in walking + fillers]
    roster = None
    if args.roster:
        roster = list(walking) + fillers[:args.roster - len(walking)]
    return Cast(enrol, walk, roster, set(strangers))


def result_suffix(args: argparse.Namespace) -> str:
    """The results file's tag for a site run: gallery, enrolment photos, views, roster, overrides."""
    if not args.gallery:
        return "-far1e-2" if "match.far=0.01" in args.overrides else ""
    tag = f"-gallery{args.gallery}-enrol{args.enrol_photos}-views{args.views}"
    tag += f"-roster{args.roster}" if args.roster else ""
    for o in args.overrides:
        tag += "-" + o.replace("tracking.", "").replace("match.", "").replace("=", "").replace(".", "")
    return tag


def run_streams(config, analyzer, matcher, video: Path, n: int, roster: list[str] | None = None) -> dict:
    """``n`` copies of the video through one pipeline, each read at its native pace as a camera."""
    results: dict[str, dict[int, tuple[np.ndarray, list[str]]]] = {f"cam{i}": {} for i in range(n)}
    latency: list[float] = []
    lock = threading.Lock()

    def on_result(result, rgb) -> None:
        with lock:
            results[result.source_id][result.frame_index] = (result.faces.xyxy.copy(), list(result.faces.name or []))
            latency.append((time.perf_counter() - result.t_read) * 1000)  # ms

    sources = [SourceConfig(url=str(video), id=f"cam{i}", realtime=True, people=roster or []) for i in range(n)]
    pipeline = Pipeline(config, sources, analyzer=analyzer, matcher=matcher)
    pipeline.add_listener(on_result)
    t0 = time.perf_counter()
    with pipeline:
        pipeline.wait()
        stats = pipeline.stats()
    wall = time.perf_counter() - t0
    per = stats["sources"]
    return {
        "streams": n, "wall_s": round(wall, 1), "results": results,
        "frames_processed": sum(len(r) for r in results.values()),
        "fps": round(len(results["cam0"]) / wall, 2),
        "fps_per_stream": {k: round(len(r) / wall, 2) for k, r in results.items()},
        "dropped": sum(per[k]["dropped"] for k in results), "latency_ms": spread(latency),
        "timings_ms_p50": per["cam0"]["timings_ms_p50"],
    }


def decode_ms(video: Path) -> dict:
    """Decoding alone (OpenCV/FFmpeg, one thread reading the file as fast as it can): ms per frame, so a
    box's decode cost is known apart from detection and recognition."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    times = []
    while True:
        t0 = time.perf_counter()
        ok, _ = cap.read()
        if not ok:
            break
        times.append((time.perf_counter() - t0) * 1000)
    cap.release()
    return spread(times)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 4) if values else None


def evaluate(truth, results, walk, fps: float, enrolled: set[str], strangers: set[str] | None = None) -> dict:
    """Recall by size, false detections, right names (enrolled walkers), names given to strangers (walkers
    never enrolled) and time to first box/name from truth and results."""
    found = {b: [0, 0] for b in SIZE_BINS[:-1]}
    named = [0, 0]
    wrong = 0
    stranger = [0, 0]
    false = 0
    first_box: dict[int, float] = {}
    first_name: dict[int, float] = {}
    seen: dict[int, Counter] = {}  # walker -> names its boxes carried, frame by frame
    for i, faces in enumerate(truth):
        if i not in results:
            continue
        boxes, names = results[i]
        gt = np.array([f[1] for f in faces], np.float32).reshape(-1, 4)
        hit, n_false = matches(gt, boxes)
        false += n_false
        for (k, box, width), ok in zip(faces, hit, strict=True):
            wk = walk[k]
            t = i / fps
            if ok:
                first_box.setdefault(k, t - wk.t0)
            j = _which(box, boxes) if ok else None
            if j is not None:
                seen.setdefault(k, Counter())[names[j]] += 1
            known = wk.source.identity in enrolled
            right = known and j is not None and names[j] == wk.source.identity
            if right:
                first_name.setdefault(k, t - wk.t0)
            if not known:
                if width >= 56:
                    stranger[1] += 1
                    stranger[0] += int(j is not None and names[j] != "unknown")
                continue
            if wk.t1 - wk.t0 >= 1.0:
                for lo, hi in zip(SIZE_BINS[:-1], SIZE_BINS[1:], strict=True):
                    if lo <= width < hi:
                        found[lo][1] += 1
                        found[lo][0] += int(ok)
            if width >= 56:
                named[1] += 1
                named[0] += int(right)
                wrong += int(j is not None and names[j] not in ("unknown", wk.source.identity))
    processed = max(1, len(results))
    return {
        "recall_by_size": {f"{lo}-{hi - 1}": round(f / n, 4) if n else None
                           for (lo, (f, n)), hi in zip(found.items(), SIZE_BINS[1:], strict=True)},
        "faces_by_size": {f"{lo}-{hi - 1}": n for (lo, (_, n)), hi in zip(found.items(), SIZE_BINS[1:], strict=True)},
        "false_per_frame": round(false / processed, 4),
        "right_name_56px_plus": round(named[0] / named[1], 4) if named[1] else None,
        "wrong_name_56px_plus": round(wrong / named[1], 4) if named[1] else None,
        "stranger_named_56px_plus": round(stranger[0] / stranger[1], 4) if stranger[1] else None,
        "stranger_frames_56px_plus": stranger[1],
        "time_to_first_box_s": spread(list(first_box.values())),
        "time_to_first_box_48px_plus_s": spread([v for k, v in first_box.items() if min(walk[k].w0, walk[k].w1) >= 48]),
        "time_to_first_name_s": spread(list(first_name.values())),
        "walkers_boxed": f"{len(first_box)}/{len(walk)}",
        "walkers_named": f"{len(first_name)}/{sum(w.source.identity in enrolled for w in walk)}",
        "per_walker": per_walker(walk, seen, enrolled, strangers),
    }


def per_walker(walk: list[Walker], seen: dict[int, Counter], enrolled: set[str], strangers: set[str] | None) -> dict:
    """Each walker judged as a person at the door: named right when the name on most of its named frames is
    its own, wrong when it is someone else's, unnamed when no frame carried a name; a stranger counts as
    named when any frame of theirs carried any name. A walker whose enrolment photo was refused is neither
    (counted apart)."""
    right = wrong = unnamed = refused = 0
    any_wrong = n_strangers = strangers_named = 0
    for k, wk in enumerate(walk):
        names = Counter({n: c for n, c in seen.get(k, Counter()).items() if n != "unknown"})
        if wk.source.identity not in enrolled:
            if strangers is None or wk.source.identity in strangers:
                n_strangers += 1
                strangers_named += int(bool(names))
            else:
                refused += 1
            continue
        any_wrong += int(any(n != wk.source.identity for n in names))
        if not names:
            unnamed += 1
        elif names.most_common(1)[0][0] == wk.source.identity:
            right += 1
        else:
            wrong += 1
    people = right + wrong + unnamed

    def share(n: int, d: int) -> float | None:
        return round(n / d, 4) if d else None

    return {"walkers": people, "named_right": share(right, people), "named_wrong": share(wrong, people),
            "unnamed": share(unnamed, people), "any_frame_wrong": share(any_wrong, people),
            "strangers": n_strangers, "strangers_named": share(strangers_named, n_strangers),
            "walkers_not_enrolled": refused,
            "counts": {"right": right, "wrong": wrong, "unnamed": unnamed, "strangers_named": strangers_named}}


def spread(values: list[float]) -> dict[str, float | int | None]:
    """n, median, p95, p99 and max of a list of values (None when empty)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    v = np.asarray(values, np.float64)
    return {"n": len(v), "p50": round(float(np.percentile(v, 50)), 3), "p95": round(float(np.percentile(v, 95)), 3),
            "p99": round(float(np.percentile(v, 99)), 3), "max": round(float(v.max()), 3)}


def _which(box: np.ndarray, boxes: np.ndarray) -> int | None:
    from facestream.stream.engine.detect import box_iou

    iou = box_iou(box[None], boxes)[0] if len(boxes) else np.zeros(0)
    return int(iou.argmax()) if len(iou) and iou.max() >= 0.3 else None


if __name__ == "__main__":
    sys.exit(main())
