"""``facestream feedback``: "not this person" and "this is X" from the command line, listed and undone."""

from __future__ import annotations

import argparse
import json

from facestream.stream.cli.common import add_command, add_gallery_options, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("feedback", help="correct recognitions: not this person / this is X, list, undo")
    fsub = p.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    q = add_command(fsub, "not", "keep a face as NOT this person (they stop being named for faces like it)",
                    cmd_not, add_gallery_options)
    q.add_argument("photo")
    q.add_argument("--person", required=True, help="the person the face must not be named as")
    q.add_argument("--face", type=int, default=None, help="which face, counted left to right from 1 (default: largest)")
    q.add_argument("--json", action="store_true")
    q = add_command(fsub, "is", "add a face to a person, through enrolment's checks", cmd_is, add_gallery_options)
    q.add_argument("photo")
    q.add_argument("--person", required=True)
    q.add_argument("--face", type=int, default=None, help="which face, counted left to right from 1 (default: largest)")
    q.add_argument("--new", action="store_true", help="enrol a new person of that name if there is none")
    q.add_argument("--json", action="store_true")
    q = add_command(fsub, "list", "corrections in force", cmd_list, add_gallery_options)
    q.add_argument("--person", default=None)
    q.add_argument("--json", action="store_true")
    q = add_command(fsub, "undo", "take a correction back", cmd_undo, add_gallery_options)
    q.add_argument("id", help="the id `feedback list` (or the correction itself) printed")


def _setup(args: argparse.Namespace):
    from facestream.stream.engine.analyzer import FaceAnalyzer
    from facestream.stream.recognition.identify import open_gallery

    config = load_args_config(args)
    return FaceAnalyzer(config), open_gallery(config)


def _face(analyzer, path: str, which: int | None):
    """The chosen face of a photo as a sample (chip, embedding, landmarks, width)."""
    import numpy as np

    from facestream.errors import FacestreamError
    from facestream.stream.engine.imageio import load_image
    from facestream.stream.recognition.feedback import FaceSample

    rgb = load_image(path)
    faces = analyzer.detect(rgb)
    if not len(faces):
        raise FacestreamError(f"No face found in {path}.", "Use a photo where the face is visible.")
    order = np.argsort(faces.xyxy[:, 0], kind="stable")
    if which is None:
        i = int(np.argmax(faces.width))
    elif 1 <= which <= len(faces):
        i = int(order[which - 1])
    else:
        raise FacestreamError(f"{path} has {len(faces)} face(s); there is no face {which}.",
                              f"Pass --face between 1 and {len(faces)} (left to right).")
    one = faces[[i]]
    chip = analyzer.chips(rgb, one)[0]
    return FaceSample(chip, analyzer.embed_chips(chip[None])[0], one.landmarks[0], float(one.width[0]), path)


def _show(fb, as_json: bool) -> None:
    if as_json:
        print(json.dumps(fb.to_json(), indent=2))
    else:
        what = f"not {fb.name}" if fb.verdict == "not" else f"is {fb.name}"
        print(f"{what}: {fb.id}" + (f" ({fb.detail})" if fb.detail else "") + "\nundo: facestream feedback undo "
              + fb.id)


def cmd_not(args: argparse.Namespace) -> int:
    from facestream.stream.recognition.feedback import mark_not

    analyzer, store = _setup(args)
    store.get_person(args.person)  # an unknown name fails before the models run
    _show(mark_not(store, args.person, _face(analyzer, args.photo, args.face), analyzer.model_id,
                   f"photo:{args.photo}"), args.json)
    return 0


def cmd_is(args: argparse.Namespace) -> int:
    from facestream.stream.recognition.enroll import Enroller
    from facestream.stream.recognition.feedback import mark_is

    analyzer, store = _setup(args)
    if not args.new:
        store.get_person(args.person)
    face = _face(analyzer, args.photo, args.face)
    _show(mark_is(Enroller(analyzer, store, progress=False), args.person, face, f"photo:{args.photo}",
                  create=args.new), args.json)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from facestream.stream.recognition.feedback import list_feedback
    from facestream.stream.recognition.identify import open_gallery

    items = list_feedback(open_gallery(load_args_config(args)), args.person)
    if args.json:
        print(json.dumps([f.to_json() for f in items], indent=2))
        return 0
    for f in items:
        print(f"{f.verdict:3s} {f.name:24s} {f.source:40s} {f.id}")
    print(f"{len(items)} correction(s)")
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    from facestream.stream.recognition.feedback import undo

    analyzer, store = _setup(args)
    fb = undo(store, analyzer.model_id, args.id)
    print(f"undone: {'not ' if fb.verdict == 'not' else ''}{fb.name} ({fb.id})")
    return 0
