"""Face detection speed per mode and frame size, the smallest face each mode finds, and landmark/align cost.

    .venv/bin/python bench/detect.py                 # all modes, 640x480 and 1920x1080
    .venv/bin/python bench/detect.py --repeats 50 --modes full,full+tiling

Modes: ``short`` and ``full`` (BlazeFace short/full range, one model call per
frame) and ``full+tiling`` (full range on 512 px tiles with 25% overlap plus the
whole frame). Frames are real photos: ``two_people.jpg`` resized onto a 640x480
canvas and the real 1920x1080 ``obama-1080p.jpg``. Reported: median ms per
``FaceDetector.detect`` call (downscale, tiles, NMS included).

Smallest face: a real face (with its head) from each of four photos is pasted
into the 1080p frame at 480, 320, 240, 200, 160, 120, 96, 80, 64, 56, 48, 40, 32,
24 and 16 px (detector box width) at two places (moved inwards where a big one
would not fit); a face counts as found when a detection overlaps it with IoU > 0.4. ``smallest_all`` is the smallest size found for
every face and place, ``smallest_any`` the smallest found at least once.

Results go to ``bench/results/detect-<machine>.json`` (see bench/common.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_info, summarize, time_calls, write_result  # noqa: E402
from facestream.stream.config import DetectorConfig  # noqa: E402
from facestream.stream.engine.align import align_faces  # noqa: E402
from facestream.stream.engine.detect import FaceDetector, box_iou  # noqa: E402
from facestream.stream.engine.imageio import load_image  # noqa: E402
from facestream.stream.engine.landmarks import LandmarkPredictor  # noqa: E402

log = logging.getLogger("bench.detect")

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "faces"
EXAMPLES = DATA / "face_recognition_examples"
MODES = {
    "short": DetectorConfig(model="short", tiling="off"),
    "full": DetectorConfig(model="full", tiling="off"),
    "full+tiling": DetectorConfig(model="full", tiling="on"),
}
SIZES = (480, 320, 240, 200, 160, 120, 96, 80, 64, 56, 48, 40, 32, 24, 16)
FACES = (
    EXAMPLES / "Kit_Harington" / "john1.jpeg",
    EXAMPLES / "Joe_Biden" / "biden.jpg",
    DATA / "deepface_celebs" / "Angelina" / "img1.jpg",
    DATA / "deepface_celebs" / "Mark" / "img13.jpg",
)
PLACES = ((1500, 640), (200, 700))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    p.add_argument("--repeats", type=int, default=20, help="timed calls per mode and frame (median reported)")
    p.add_argument("--data", type=Path, default=DATA, help="the shared photo folder")
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    return p.parse_args(argv)


def frames(data: Path) -> dict[str, np.ndarray]:
    """Real frames at the two sizes a camera delivers most."""
    group = load_image(data / "face_recognition_examples" / "_nonsingle" / "_group" / "two_people.jpg")
    k = min(640 / group.shape[1], 480 / group.shape[0])
    small = cv2.resize(group, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    vga = np.zeros((480, 640, 3), np.uint8)
    vga[: small.shape[0], : small.shape[1]] = small
    hd = load_image(data / "face_recognition_examples" / "_nonsingle" / "_resolution" / "obama-1080p.jpg")
    return {"640x480": vga, "1920x1080": hd}


def face_patch(ref: FaceDetector, path: Path, px: int) -> tuple[np.ndarray, np.ndarray]:
    """A real face scaled so that its detector box is ``px`` wide, and that box within the patch."""
    img = load_image(path)
    x1, y1, x2, y2 = ref.detect(img).xyxy[0]
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    X1, Y1 = int(max(0, cx - side)), int(max(0, cy - side))
    X2, Y2 = int(min(img.shape[1], cx + side)), int(min(img.shape[0], cy + side))
    k = px / side
    patch = cv2.resize(img[Y1:Y2, X1:X2], None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    return patch, np.array([(x1 - X1) * k, (y1 - Y1) * k, (x2 - X1) * k, (y2 - Y1) * k], np.float32)


def smallest_face(det: FaceDetector, ref: FaceDetector, frame: np.ndarray) -> dict:
    """Which pasted face sizes the detector finds in a 1080p frame."""
    found: dict[int, int] = {}
    for size in SIZES:
        hits = 0
        for path in FACES:
            patch, box = face_patch(ref, path, size)
            for x, y in PLACES:
                x = min(x, frame.shape[1] - patch.shape[1])
                y = min(y, frame.shape[0] - patch.shape[0])
                img = frame.copy()
                img[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
                truth = (box + np.array([x, y, x, y], np.float32))[None]
                faces = det.detect(img)
                hits += int(len(faces) > 0 and box_iou(truth, faces.xyxy).max() > 0.4)
        found[size] = hits
    trials = len(FACES) * len(PLACES)
    every = [s for s in SIZES if found[s] == trials]
    any_ = [s for s in SIZES if found[s] > 0]
    return {
        "found_of": trials,
        "found_by_size_px": found,
        "smallest_all_px": min(every) if every else None,
        "smallest_any_px": min(any_) if any_ else None,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    info = machine_info()
    imgs = frames(args.data)
    ref = FaceDetector(MODES["full"])
    rows = []
    for mode in args.modes.split(","):
        det = FaceDetector(MODES[mode])
        row: dict = {"mode": mode, "config": MODES[mode].model_dump()}
        for name, img in imgs.items():
            stats = summarize(time_calls(lambda d=det, i=img: d.detect(i), args.repeats, warmup=2))
            row[name] = {**stats, "faces": len(det.detect(img))}
            print(f"{mode:12s} {name:10s} {stats['median_ms']:7.1f} ms/frame  ({row[name]['faces']} faces)")
        row["smallest_face"] = smallest_face(det, ref, imgs["1920x1080"])
        print(f"{mode:12s} smallest face found: all {row['smallest_face']['smallest_all_px']} px, "
              f"any {row['smallest_face']['smallest_any_px']} px")
        rows.append(row)
        det.close()

    # landmarks + alignment per face (what runs for each face that needs an embedding)
    lm = LandmarkPredictor()
    group = load_image(EXAMPLES / "_nonsingle" / "_group" / "two_people.jpg")
    boxes = ref.detect(group).xyxy
    pts = lm.predict(group, boxes)
    per_face = {
        "faces": len(boxes),
        "landmarks": summarize(time_calls(lambda: lm.predict(group, boxes), args.repeats, warmup=2)),
        "align_150": summarize(time_calls(lambda: align_faces(group, pts), args.repeats, warmup=2)),
    }
    print(f"landmarks {per_face['landmarks']['median_ms']:.2f} ms, align {per_face['align_150']['median_ms']:.2f} ms "
          f"for {len(boxes)} faces in {group.shape[1]}x{group.shape[0]}")
    write_result("detect", {"modes": rows, "landmarks_align": per_face, "machine": info}, out_dir=args.out)


if __name__ == "__main__":
    main()
