"""``facestream calibrate``: error rates on the user's own gallery, and the operating point every worker uses."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facestream.stream.cli.common import add_command, add_gallery_options, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "calibrate", "measure false accepts/rejects on your gallery and store the operating point",
                    cmd_calibrate, add_gallery_options)
    p.add_argument("--strangers", nargs="*", default=[], metavar="FOLDER",
                   help="folders of photos of people NOT enrolled (every face in them is a stranger)")
    p.add_argument("--far", type=float, default=None,
                   help="the chance of naming a stranger you accept, per face (default match.far, else 1e-3)")
    p.add_argument("--plot", default="calibration.png", help="where to save the plot (PNG)")
    p.add_argument("--dry-run", action="store_true", help="measure and print; store nothing")
    p.add_argument("--force", action="store_true", help="store the operating point even with too little data")
    p.add_argument("--reset", action="store_true", help="remove the stored operating point (back to the model's)")
    p.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                   help="also log the calibration to MLflow (default store: mlflow.tracking_uri)")
    p.add_argument("--json", action="store_true")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from facestream.errors import FacestreamError
    from facestream.gallery.calibration import calibrate_gallery
    from facestream.gallery.decision import DEFAULT_FAR
    from facestream.gallery.store import setting_key
    from facestream.stream.engine.analyzer import FaceAnalyzer
    from facestream.stream.recognition.identify import open_gallery

    config = load_args_config(args)
    analyzer = FaceAnalyzer(config)
    store = open_gallery(config)
    key = setting_key("operating_point", analyzer.model_id)
    if args.reset:
        store.set_setting(key, None)
        print(f"removed the stored operating point of {analyzer.model_id}; the model's calibration applies")
        return 0
    far = args.far if args.far is not None else (config.match.far or DEFAULT_FAR)
    if not 0.0 < far < 1.0:
        raise FacestreamError(f"--far {far} is not a rate.", "Pass a number between 0 and 1, e.g. --far 1e-3.")
    data = store.load_matrix(analyzer.model_id)
    if len(data.person_ids) < 2:
        raise FacestreamError(f"The gallery at {store.url} has {len(data.person_ids)} people enrolled with "
                              f"{analyzer.model_id}; calibration compares people with each other.",
                              "Enrol at least two people (more, with two photos each, say more).")
    strangers = _embed_strangers(analyzer, args.strangers, config.match.min_face) if args.strangers else None
    report = calibrate_gallery(data, analyzer.impostor_tail, far, strangers)
    thresholds = {r.label: r.threshold for r in report.rows}
    plot = None
    try:
        from facestream.trainer.evaluate import plot_calibration

        plot = plot_calibration(report.genuine, report.impostor, report.impostor_total, report.open_set,
                                thresholds, args.plot, f"{store.url}: {report.people} people, {report.photos} photos")
    except ModuleNotFoundError as exc:  # matplotlib comes with the train extra
        report.warnings.append(f"no plot: {exc.name} is not installed (pip install 'facestream[train]')")
    stored = False
    if not args.dry_run and (report.enough or args.force):
        store.set_setting(key, report.operating_point(analyzer.model_id))
        stored = True
    if args.mlflow is not None:
        _log_mlflow(args.mlflow or config.mlflow.tracking_uri, config.mlflow.experiment, report, plot, store.url)
    out = {**report.to_json(), "model": analyzer.model_id, "gallery": store.url, "plot": str(plot) if plot else None,
           "stored": stored}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print(out, analyzer.model_id)
    if not stored and not args.dry_run:
        print("not stored: too little data to change the operating point (see above; --force stores it anyway)")
        return 1
    return 0


def _embed_strangers(analyzer, folders: list[str], min_face: int):
    """Every face (at least ``min_face`` px) in the photos of the stranger folders, embedded."""
    import numpy as np

    from facestream.errors import FacestreamError
    from facestream.stream.engine.imageio import image_files, load_image

    out = []
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            raise FacestreamError(f"--strangers {folder} is not a folder.", "Pass folders of photos.")
        files = [f for d in [path, *sorted(p for p in path.rglob("*") if p.is_dir())] for f in image_files(d)]
        for f in files:
            try:
                rgb = load_image(f)
            except FacestreamError:
                continue
            faces = analyzer.detect(rgb)
            faces = faces[np.minimum(faces.width, faces.height) >= min_face] if len(faces) else faces
            if len(faces):
                out.append(analyzer.embed(rgb, faces).embedding)
    if not out:
        raise FacestreamError(f"No faces found in {', '.join(folders)}.", "Pass folders with photos of faces.")
    return np.concatenate(out)


def _print(out: dict, model_id: str) -> None:
    print(f"{out['gallery']} ({model_id}): {out['people']} people, {out['photos']} photos, "
          f"{out['strangers']} stranger faces")
    print(f"{out['genuine_pairs']} genuine pairs (leave-one-out), {out['impostor_comparisons']} impostor comparisons, "
          f"{out['open_set_probes']} stranger probes")
    if out["shift"] is not None:
        print(f"your people's impostor scores sit {out['shift']:+.4f} from the model's calibration")
    print(f"\n{'threshold':<22}{'similarity':>11}{'false rejects':>15}{'FAR per person':>16}{'strangers named':>17}")
    for r in out["thresholds"]:
        def pct(v):
            return "-" if v is None else f"{v:.2%}" if v >= 1e-3 or v == 0 else f"{v:.1e}"
        print(f"{r['label']:<22}{r['threshold']:>11.4f}{pct(r['frr']):>15}{pct(r['far_per_person']):>16}"
              f"{pct(r['far_open_set']):>17}")
    for w in out["warnings"]:
        print(f"warning: {w}")
    if out["plot"]:
        print(f"plot: {out['plot']}")
    if out["stored"]:
        print(f"stored with the gallery: far {out['far']:g}, shift {out['shift'] or 0:+.4f} "
              "(every worker uses it from its next search; match.far / match.threshold in a config override it)")


def _log_mlflow(uri: str, experiment: str, report, plot, gallery: str) -> None:
    import mlflow

    from facestream.trainer.tracking import setup

    setup(uri, experiment)
    with mlflow.start_run(run_name="calibrate"):
        mlflow.set_tag("facestream.kind", "calibration")
        mlflow.log_params({"gallery": gallery, "people": report.people, "photos": report.photos,
                           "strangers": report.strangers, "far": report.far})
        metrics = {"shift": report.shift or 0.0, "genuine_pairs": len(report.genuine),
                   "impostor_comparisons": report.impostor_total}
        for r in report.rows:
            tag = r.label.split(" (")[0].replace(" ", "_")
            for k in ("threshold", "frr", "far_per_person", "far_open_set"):
                v = getattr(r, k)
                if v is not None:
                    metrics[f"{tag}.{k}"] = v
        mlflow.log_metrics(metrics)
        if plot:
            mlflow.log_artifact(str(plot))
