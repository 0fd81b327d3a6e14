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
    p.add_argument("image_a", nargs="?")
    p.add_argument("image_b", nargs="?")
    p.add_argument("--pairs", metavar="CSV",
                   help="many pairs: a CSV with columns a,b (image paths, relative to the CSV) and optionally same "
                        "(1/0, yes/no, true/false); one JSON line per pair, then the error rates")
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

    if args.pairs:
        if args.image_a or args.image_b:
            raise FacestreamError("Pass two photos or --pairs CSV, not both.", "Drop the photos or the --pairs option.")
        return compare_pairs(_analyzer(args), Path(args.pairs))
    if not (args.image_a and args.image_b):
        raise FacestreamError("compare needs two photos (or --pairs CSV).", "Run: facestream compare a.jpg b.jpg")
    from facestream.stream.recognition.identify import compare_photos

    c = compare_photos(_analyzer(args), load_image(args.image_a), load_image(args.image_b), args.image_a,
                       args.image_b)
    similarity, threshold, n_a, n_b = c.similarity, c.threshold, c.faces_in_a, c.faces_in_b
    result = {"same": c.same, "similarity": round(similarity, 4), "threshold": round(threshold, 4),
              "model": c.model, "faces_in_a": n_a, "faces_in_b": n_b}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        verdict = "SAME person" if result["same"] else "DIFFERENT people"
        print(f"{verdict}: similarity {similarity:.3f} (threshold {threshold:.3f})")
        for name, n in ((args.image_a, n_a), (args.image_b, n_b)):
            if n > 1:
                print(f"note: {name} has {n} faces; the largest was compared")
    return 0


TRUE = {"1", "true", "yes", "y", "same", "t"}
FALSE = {"0", "false", "no", "n", "different", "f"}


def compare_pairs(analyzer, csv_path: Path) -> int:
    """One JSON line per pair (``a``, ``b``, ``same``, ``similarity``, ``threshold``; ``expected`` when the CSV says),
    then a summary line with the accuracy and error rates. Each photo is read and embedded once; a photo that
    fails gives its pairs an ``error`` and the run goes on."""
    from facestream.stream.engine.imageio import load_image
    from facestream.stream.recognition.roster_table import read_table

    header, rows = read_table(csv_path)
    cols = {h.strip().casefold(): h for h in header}
    if "a" not in cols or "b" not in cols:
        raise FacestreamError(f"{csv_path} has no columns a and b (it has: {', '.join(header)}).",
                              "Write a header line: a,b,same (same is optional).")
    threshold = analyzer.threshold
    cache: dict[str, object] = {}

    def embedding(ref: str):
        if ref not in cache:
            path = Path(ref).expanduser()
            path = path if path.is_absolute() else csv_path.parent / path
            try:
                faces, _ = analyzer.largest_face(load_image(path), str(path))
                cache[ref] = faces.embedding[0]
            except FacestreamError as exc:
                cache[ref] = exc
        return cache[ref]

    tally = {"pairs": 0, "labelled": 0, "right": 0, "false_accepts": 0, "false_rejects": 0, "genuine": 0,
             "impostor": 0, "errors": 0}
    for row in rows:
        a, b = (row.get(cols["a"]) or "").strip(), (row.get(cols["b"]) or "").strip()
        if not a and not b:
            continue
        line: dict = {"a": a, "b": b}
        label = (row.get(cols["same"]) or "").strip().casefold() if "same" in cols else ""
        expected = True if label in TRUE else False if label in FALSE else None
        if label and expected is None:
            line["error"] = f"same={label!r} is not 1/0, yes/no or true/false"
        ea, eb = embedding(a), embedding(b)
        bad = next((e for e in (ea, eb) if isinstance(e, FacestreamError)), None)
        if bad is not None:
            line["error"] = str(bad)
        if "error" in line:
            tally["errors"] += 1
            print(json.dumps(line), flush=True)
            continue
        similarity = float(analyzer.similarity(ea, eb))
        same = similarity >= threshold
        line.update(same=same, similarity=round(similarity, 4), threshold=round(threshold, 4))
        tally["pairs"] += 1
        if expected is not None:
            line["expected"] = expected
            tally["labelled"] += 1
            tally["right"] += int(same == expected)
            tally["genuine" if expected else "impostor"] += 1
            tally["false_accepts"] += int(same and not expected)
            tally["false_rejects"] += int(expected and not same)
        print(json.dumps(line), flush=True)
    summary: dict = {"summary": True, "pairs": tally["pairs"], "errors": tally["errors"],
                     "threshold": round(threshold, 4),
                     "model": analyzer.model_id}
    if tally["labelled"]:
        summary.update(labelled=tally["labelled"], accuracy=round(tally["right"] / tally["labelled"], 4),
                       far=round(tally["false_accepts"] / tally["impostor"], 4) if tally["impostor"] else None,
                       frr=round(tally["false_rejects"] / tally["genuine"], 4) if tally["genuine"] else None,
                       false_accepts=tally["false_accepts"], false_rejects=tally["false_rejects"])
    print(json.dumps(summary), flush=True)
    return 2 if tally["errors"] and not tally["pairs"] else 0


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from facestream.stream.engine.model_store import DETECTORS, HELPERS, get_model, prepare_model

    # the configured embedder and both detector ranges, unless one model is named
    names = [args.name] if args.name else [load_args_config(args).embedder.model, *DETECTORS, *HELPERS]
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
