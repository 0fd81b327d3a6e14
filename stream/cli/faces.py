"""``facestream detect``, ``compare`` and ``models``: the face engine from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facestream.errors import FacestreamError
from facestream.stream.cli.common import add_command, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "detect", "find faces (boxes, scores, landmarks) in images", cmd_detect)
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", help="draw the faces: an image path (one input) or a folder (several)")

    p = add_command(sub, "compare", "1:1 verification: are the faces in two photos the same person?", cmd_compare)
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("--json", action="store_true", help="print JSON (keys: same, similarity, threshold)")

    p = sub.add_parser("models", help="prepare the embedding model or show what runs")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    prep = add_command(msub, "prepare", "convert the embedding and detection models to ONNX and cache them (once)",
                       cmd_models_prepare)
    prep.add_argument("name", nargs="?", default=None,
                      help="one model name (default: the configured embedder and both BlazeFace ranges)")
    prep.add_argument("--force", action="store_true", help="rebuild even if cached")
    info = add_command(msub, "info", "model spec, cache location and available engines", cmd_models_info)
    info.add_argument("--json", action="store_true")


def _analyzer(args: argparse.Namespace):
    from facestream.stream.engine.analyzer import FaceAnalyzer

    return FaceAnalyzer(load_args_config(args))


def _out_path(out: str, image: str, several: bool) -> Path:
    if not several:
        return Path(out)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (Path(image).stem + "_faces.jpg")


def cmd_detect(args: argparse.Namespace) -> int:
    from facestream.stream.engine.draw import draw_faces
    from facestream.stream.engine.imageio import load_image, save_image

    analyzer = _analyzer(args)
    several = len(args.images) > 1
    report, failed = [], 0
    for image in args.images:
        try:
            rgb = load_image(image)
            faces = analyzer.detect(rgb)
        except FacestreamError as exc:
            failed += 1
            report.append({"image": image, "error": str(exc)})
            print(f"error: {exc}", file=sys.stderr)
            continue
        report.append({"image": image, "width": rgb.shape[1], "height": rgb.shape[0], "faces": faces.to_json()})
        if args.out:
            save_image(_out_path(args.out, image, several), draw_faces(rgb, faces))
    if args.json:
        print(json.dumps(report if several else report[0], indent=2))
    else:
        for item in report:
            if "error" in item:
                continue
            print(f"{item['image']}: {len(item['faces'])} face(s)")
            for i, face in enumerate(item["faces"]):
                x1, y1, x2, y2 = face["box"]
                print(f"  #{i}  box=({x1:.0f},{y1:.0f})-({x2:.0f},{y2:.0f})  {x2 - x1:.0f}x{y2 - y1:.0f}px  "
                      f"score={face['score']:.2f}")
    return 2 if failed else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from facestream.stream.engine.imageio import load_image

    analyzer = _analyzer(args)
    face_a, n_a = analyzer.largest_face(load_image(args.image_a), args.image_a)
    face_b, n_b = analyzer.largest_face(load_image(args.image_b), args.image_b)
    similarity = analyzer.similarity(face_a.embedding[0], face_b.embedding[0])
    threshold = analyzer.threshold
    result = {
        "same": bool(similarity >= threshold),
        "similarity": round(similarity, 4),
        "threshold": round(threshold, 4),
        "model": analyzer.model_id,
        "faces_in_a": n_a,
        "faces_in_b": n_b,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        verdict = "SAME person" if result["same"] else "DIFFERENT people"
        print(f"{verdict}: similarity {similarity:.3f} (threshold {threshold:.3f})")
        for name, n in ((args.image_a, n_a), (args.image_b, n_b)):
            if n > 1:
                print(f"note: {name} has {n} faces; the largest was compared")
    return 0


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from facestream.stream.engine.model_store import DETECTORS, get_model, prepare_model

    # the configured embedder and both detector ranges, unless one model is named
    names = [args.name] if args.name else [load_args_config(args).embedder.model, *DETECTORS]
    for name in names:
        spec = prepare_model(name, force=True) if args.force else get_model(name)
        print(f"{spec.name}: ready ({spec.model_id}) at {spec.onnx_path}")
    return 0


def cmd_models_info(args: argparse.Namespace) -> int:
    from facestream.stream.engine.model_store import get_model, model_info
    from facestream.stream.engine.runtimes import available_engines

    config = load_args_config(args)
    info = {"model": model_info(get_model(config.embedder.model)), "engines": available_engines()}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info["model"].items():
            print(f"{key:>14}: {value}")
        print("engines:")
        for name, state in info["engines"].items():
            print(f"  {name:<12} {state}")
    return 0
