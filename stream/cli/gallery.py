"""``facestream enroll``, ``identify``, ``verify``, ``people`` and ``gallery``: the gallery from the command line.

Every command takes ``--gallery URL`` (else ``$FACESTREAM_GALLERY``, else the
config's ``gallery.url``): ``sqlite:///path/gallery.db`` or ``redis://host:6379/0``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facestream.stream.cli.common import add_command, add_gallery_options, load_args_config
from facestream.stream.config import Config

if TYPE_CHECKING:  # the handlers import the engine and the gallery when they run: --help stays quick
    from facestream.gallery.store import GalleryStore
    from facestream.stream.engine.analyzer import FaceAnalyzer


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "enroll", "add people from a folder of folders, photos, or a roster CSV/XLSX",
                    cmd_enroll, add_gallery_options)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="people/ (one sub-folder per person), photos or URLs with --name, or roster.csv/.xlsx")
    p.add_argument("--name", help="the person in the given photos")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata for everyone enrolled (repeatable), e.g. --meta group=B2")
    p.add_argument("--name-column", help="roster column holding names (default: name, full name, student, ...)")
    p.add_argument("--photo-column", help="roster column holding photo paths/URLs (default: photo, image, url, ...)")
    p.add_argument("--accept-flagged", action="store_true",
                   help="also store photos flagged mismatch / looks_like_other (they may show someone else)")
    p.add_argument("--allow-local", action="store_true",
                   help="a roster you trust: photo URLs on this machine or its private network, photo paths "
                   "outside the roster's folder")
    p.add_argument("--json", action="store_true", help="print every verdict as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add_command(sub, "identify", "name every face in photos (1:N), or list look-alikes with --top-k",
                    cmd_identify, add_gallery_options)
    p.add_argument("photos", nargs="+", metavar="PHOTO",
                   help="photos or folders; with more than one photo, one JSON line per photo")
    p.add_argument("--top-k", type=int, default=None, help="closest enrolled people per face (default match.top_k)")
    p.add_argument("--out", help="write the photo with boxes and names here (a folder for several photos)")
    p.add_argument("--json", action="store_true")

    p = add_command(sub, "verify", "is the face in this photo that person (1:1)? exit 0 yes, 1 no", cmd_verify,
                    add_gallery_options)
    p.add_argument("photo")
    p.add_argument("--person", required=True, help="name or id of the enrolled person")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("people", help="list, show, rename or delete enrolled people")
    psub = p.add_subparsers(dest="people_command", metavar="ACTION", required=True)
    q = add_command(psub, "list", "everyone enrolled", cmd_people_list, add_gallery_options)
    q.add_argument("--json", action="store_true")
    q = add_command(psub, "show", "one person: metadata and embeddings", cmd_people_show, add_gallery_options)
    q.add_argument("person", help="name or id")
    q.add_argument("--json", action="store_true")
    q = add_command(psub, "rename", "change a display name", cmd_people_rename, add_gallery_options)
    q.add_argument("person")
    q.add_argument("new_name")
    q = add_command(psub, "delete", "remove a person and every trace (embeddings, chips, caches)",
                    cmd_people_delete, add_gallery_options)
    q.add_argument("person")

    p = sub.add_parser("gallery", help="export/import a gallery, show its models, re-embed after a model change")
    gsub = p.add_subparsers(dest="gallery_command", metavar="ACTION", required=True)
    q = add_command(gsub, "export", "write people, embeddings and chips to a .zip", cmd_gallery_export,
                    add_gallery_options)
    q.add_argument("file")
    q = add_command(gsub, "import", "add the people of an exported .zip (idempotent)", cmd_gallery_import,
                    add_gallery_options)
    q.add_argument("file")
    q = add_command(gsub, "info", "people, embeddings per model, and whether they match the current model",
                    cmd_gallery_info, add_gallery_options)
    q.add_argument("--json", action="store_true")
    q = add_command(gsub, "reembed", "re-embed stored face chips with the current model", cmd_gallery_reembed,
                    add_gallery_options)
    q.add_argument("--from-model", help="model id whose chips to re-embed (default: every other model)")
    q.add_argument("--drop-old", action="store_true", help="delete the old model's embeddings afterwards")


def _config(args: argparse.Namespace) -> Config:
    return load_args_config(args)


def _store(args: argparse.Namespace, config: Config | None = None) -> GalleryStore:
    from facestream.stream.recognition.identify import open_gallery

    return open_gallery(config or _config(args))


def _analyzer(config: Config) -> FaceAnalyzer:
    from facestream.stream.engine.analyzer import FaceAnalyzer

    return FaceAnalyzer(config)


def _dump(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def cmd_enroll(args: argparse.Namespace) -> int:
    from facestream.stream.recognition.enroll import Enroller, parse_meta

    config = _config(args)
    meta = parse_meta(args.meta)
    store = _store(args, config)
    enroller = Enroller(_analyzer(config), store, progress=not args.quiet, accept_flagged=args.accept_flagged,
                        allow_local=args.allow_local)
    report = enroller.enroll_path(args.sources, args.name, meta, args.name_column, args.photo_column)
    if args.json:
        _dump(report.to_json())
    else:
        for v in report.verdicts:
            if not v.enrolled:
                print(f"{v.verdict:16s} {v.person}: {v.source}" + (f" ({v.detail})" if v.detail else ""))
            for w in v.warnings:
                print(f"{'warning':16s} {v.person}: {v.source} ({w})")
        print(report.summary())
        if any(v.verdict in ("mismatch", "looks_like_other") for v in report.verdicts):
            print("flagged photos were not stored: check them, then re-run with --accept-flagged to store them")
    return 0 if report.people or any(v.verdict == "duplicate" for v in report.verdicts) else 1


def cmd_identify(args: argparse.Namespace) -> int:
    from facestream.stream.engine.imageio import image_files, load_image, save_image
    from facestream.stream.recognition.identify import identify, open_matcher, results_to_json

    config = _config(args)
    top_k = args.top_k or config.match.top_k
    photos: list[Path] = []
    for ref in map(Path, args.photos):
        photos += sorted(image_files(ref)) if ref.is_dir() else [ref]
    single = len(args.photos) == 1 and not Path(args.photos[0]).is_dir()
    rgb = load_image(photos[0]) if single else None  # a bad single photo fails before the models load
    analyzer = _analyzer(config)
    store = _store(args, config)
    matcher = open_matcher(analyzer, store, watch=False)
    matcher.ensure_ready()
    if not single:
        return _identify_many(analyzer, matcher, photos, top_k, args.out)
    assert rgb is not None
    faces, results = identify(analyzer, matcher, rgb, top_k=top_k)
    if args.out:
        from facestream.stream.engine.draw import draw_faces

        save_image(args.out, draw_faces(rgb, faces))
    if args.json:
        _dump({"photo": str(photos[0]), "model": analyzer.model_id, "decision": matcher.describe(),
               "faces": results_to_json(faces, results)})
        return 0
    if not len(faces):
        print("no face found")
        return 0
    names = faces.name or []  # identify() labels every face
    for i, res in enumerate(results):
        box = ",".join(f"{v:.0f}" for v in faces.xyxy[i])
        if res.vetoed and not res.best:
            print(f"face {i + 1} [{box}]: {names[i]} (marked 'not this person' for {len(res.vetoed)} enrolled)")
            continue
        if not res.candidates:
            print(f"face {i + 1} [{box}]: {names[i]} (too small to recognise)")
            continue
        sure = f", chance a stranger scores this high {res.far:.1e}" if res.far == res.far else ""
        print(f"face {i + 1} [{box}]: {names[i]} (similarity {res.similarity:.3f}, needed {res.threshold:.3f}{sure})")
        if top_k > 1:
            for m in res.candidates:
                print(f"    {m.rank}. {m.name} {m.similarity:.3f}")
    return 0


def _identify_many(analyzer, matcher, photos: list[Path], top_k: int, out: str | None) -> int:
    """One JSON line per photo (``photo``, then its faces as ``identify --json`` gives them); the models are
    loaded once, and a photo that cannot be read gets an ``error`` instead of stopping the run."""
    from facestream.errors import FacestreamError
    from facestream.stream.engine.imageio import load_image, save_image
    from facestream.stream.recognition.identify import identify, results_to_json

    folder = Path(out) if out else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in photos:
        try:
            rgb = load_image(path)
        except FacestreamError as exc:
            failed += 1
            print(json.dumps({"photo": str(path), "error": str(exc)}), flush=True)
            continue
        faces, results = identify(analyzer, matcher, rgb, top_k=top_k)
        if folder is not None:
            from facestream.stream.engine.draw import draw_faces

            save_image(folder / f"{path.stem}_faces.jpg", draw_faces(rgb, faces))
        print(json.dumps({"photo": str(path), "faces": results_to_json(faces, results)}, ensure_ascii=False),
              flush=True)
    return 2 if failed == len(photos) else 0


def cmd_verify(args: argparse.Namespace) -> int:
    from facestream.stream.engine.imageio import load_image
    from facestream.stream.recognition.identify import open_matcher, verify

    config = _config(args)
    rgb = load_image(args.photo)
    store = _store(args, config)
    analyzer = _analyzer(config)
    result = verify(analyzer, open_matcher(analyzer, store, watch=False), rgb, args.person)
    if args.json:
        _dump(result.to_json())
    else:
        word = "SAME person" if result.same else "NOT the same person"
        print(f"{word}: {result.name} similarity {result.similarity:.3f} (threshold {result.threshold:.3f})")
    return 0 if result.same else 1


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def cmd_people_list(args: argparse.Namespace) -> int:
    people = _store(args).list_people()
    if args.json:
        _dump([p.to_json() for p in people])
        return 0
    for p in people:
        meta = " ".join(f"{k}={v}" for k, v in p.metadata.items())
        print(f"{p.id}  {p.name:30s} {p.n_embeddings:3d} embeddings  {meta}")
    print(f"{len(people)} people")
    return 0


def cmd_people_show(args: argparse.Namespace) -> int:
    store = _store(args)
    person = store.get_person(args.person)
    embs = store.embeddings_of(person.id)
    if args.json:
        _dump({**person.to_json(), "embeddings": [e.to_json() for e in embs]})
        return 0
    print(f"{person.name} (id {person.id}), enrolled {_when(person.created)}, updated {_when(person.updated)}")
    for k, v in person.metadata.items():
        print(f"  {k}: {v}")
    for e in embs:
        print(f"  {e.model_id} {e.hash[:12]} {'chip' if e.has_chip else 'no chip'} {_when(e.created)} {e.source}")
    return 0


def cmd_people_rename(args: argparse.Namespace) -> int:
    person = _store(args).rename_person(args.person, args.new_name)
    print(f"renamed to {person.name} (id {person.id})")
    return 0


def cmd_people_delete(args: argparse.Namespace) -> int:
    from facestream.stream.attendance.erase import erase_person

    print(erase_person(_store(args), args.person).describe())
    return 0


def cmd_gallery_export(args: argparse.Namespace) -> int:
    from facestream.gallery.archive import export_gallery

    m = export_gallery(_store(args), args.file)
    print(f"exported {m['people']} people, {m['embeddings']} embeddings to {args.file}")
    return 0


def cmd_gallery_import(args: argparse.Namespace) -> int:
    from facestream.gallery.archive import import_gallery

    m = import_gallery(_store(args), args.file)
    print(f"imported {m['people']} people, {m['embeddings']} embeddings from {args.file}")
    return 0


def cmd_gallery_info(args: argparse.Namespace) -> int:
    config = _config(args)
    store = _store(args, config)
    people, counts, version = len(store.list_people()), store.model_counts(), store.version()
    if args.json:
        _dump({"url": config.gallery.url, "people": people, "embeddings_per_model": counts, "version": version,
               "configured_model": config.embedder.model})
        return 0
    print(f"{config.gallery.url}: {people} people, version {version}")
    for m, n in counts.items():
        print(f"  {m}: {n} embeddings")
    return 0


def cmd_gallery_reembed(args: argparse.Namespace) -> int:
    from facestream.stream.recognition.enroll import Enroller

    config = _config(args)
    store = _store(args, config)
    analyzer = _analyzer(config)
    models = [args.from_model] if args.from_model else [
        m for m in store.model_counts() if m != analyzer.model_id]
    if not models:
        print(f"every embedding is already made by {analyzer.model_id}")
        return 0
    enroller = Enroller(analyzer, store, progress=False)
    for model in models:
        report = enroller.reembed(model)
        print(f"{model} -> {analyzer.model_id}: {report.summary()}", file=sys.stdout)
        if args.drop_old:
            n = store.delete_model(model)
            print(f"dropped {n} embeddings of {model}")
    return 0
