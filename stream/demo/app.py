"""The Gradio page: six tabs over one :class:`~facestream.stream.demo.service.DemoService`.

This module only turns widgets into service calls and results back into
widgets. Everything a visitor can get wrong (no face, several faces, a file that
is not an image, a huge image, an unknown person) reaches the page as a short
message through :func:`_friendly`, never as a stack trace; the recognition
logic itself lives in the service and the modules it reuses.

Every event has an explicit ``api_name`` so that ``gradio_client`` scripts and
the tests call stable endpoints: ``/live``, ``/identify``, ``/verify``,
``/lookalike``, ``/enroll``, ``/people``, ``/delete``.
"""

from __future__ import annotations

import functools
import html
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# Gradio phones home (analytics, version check) unless told not to; an offline
# machine would wait on those calls, so turn them off before gradio is imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

from facestream.errors import FacestreamError  # noqa: E402
from facestream.stream.demo.service import DemoService  # noqa: E402
from facestream.stream.demo.text import md  # noqa: E402
from facestream.stream.engine.imageio import FORMATS, IMAGE_SUFFIXES, load_image, too_large  # noqa: E402

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Uploads above this are refused by Gradio itself with a readable message, before
# any decoding; imageio separately refuses absurd pixel counts.
MAX_UPLOAD = "25mb"
FACE_COLUMNS = ["face", "name", "similarity", "sure", "box (x1, y1, x2, y2)"]
LOOKALIKE_COLUMNS = ["rank", "name", "similarity", "same person?"]
ENROL_COLUMNS = ["photo", "verdict"]
PEOPLE_COLUMNS = ["name", "person id", "embeddings", "updated"]


def photo_input(label: str, elem_id: str | None = None) -> gr.Image:
    """An upload box that hands the handler a file path and turns undecodable uploads into a message.

    Gradio opens every uploaded image with PIL before the handler runs; a file
    that is not an image would otherwise surface as a bare "Error". Passing a
    path (``type="filepath"``, ``image_mode=None``) lets :func:`load_image` do
    the real decoding with its size limit and EXIF handling. The instance's
    ``preprocess`` is wrapped rather than subclassed: Gradio writes a ``.pyi``
    next to the source of every Component subclass.
    """
    image = gr.Image(label=label, sources=["upload", "clipboard"], type="filepath", image_mode=None,
                     elem_id=elem_id)
    original = image.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except gr.Error:
            raise
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):  # refused from the header
            name = getattr(payload, "orig_name", None) or "The uploaded file"
            raise gr.Error(html.escape(str(too_large(Path(str(name)).name))), title="Too large",
                           print_exception=False) from None
        except Exception as exc:  # PIL's zoo of decode errors
            log.info("rejected upload: %s", exc)
            raise gr.Error(
                f"The uploaded file is not an image facestream can read. Use a {FORMATS} photo.",
                title="Not an image", print_exception=False,
            ) from None

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


def _friendly(fn: F) -> F:
    """Run a handler and show visitor-caused errors as one readable message in the page.

    The message is HTML-escaped (Gradio renders error text as HTML, and it may quote
    a name a visitor typed) and logged at INFO: a visitor's bad photo is not a
    server fault worth a traceback in the log.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except FacestreamError as exc:  # GalleryError too
            log.info("%s: %s", fn.__name__, exc)
            raise gr.Error(html.escape(str(exc)), title="Cannot do that", print_exception=False) from None
        except Exception as exc:
            log.exception("demo handler %s failed", fn.__name__)
            raise gr.Error(
                f"Something went wrong on the server ({type(exc).__name__}). The server log has the details.",
                title="Server error", print_exception=False,
            ) from None

    return wrapper  # type: ignore[return-value]


def _photo(path: str | None, what: str = "a photo") -> np.ndarray:
    """Decode an upload; messages name the visitor's file, not the server's temporary path."""
    if not path:
        raise FacestreamError(f"No photo given for {what}.", "Upload a photo first.")
    try:
        return load_image(path)
    except FacestreamError as exc:
        name = Path(path).name
        raise FacestreamError(exc.problem.replace(str(path), name), exc.fix) from None


def _visitor(request: gr.Request | None) -> str | None:
    """The visitor's address, the key for the demo's limits (a proxy in front makes every visitor one:
    then limit at the proxy)."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


def _table(rows: list[list[Any]], headers: list[str]) -> dict[str, Any]:
    return {"headers": headers, "data": rows}


def build_demo(service: DemoService, allow_enrolment: bool = True) -> gr.Blocks:
    """Lay out the page and wire each tab to the service.

    Args:
        service: where recognition happens (models, gallery store, live tracking).
        allow_enrolment: show the Enrol tab and its ``/enroll`` endpoint; off for public kiosks.
    """
    with gr.Blocks(title="facestream demo", analytics_enabled=False) as demo:
        gr.Markdown("# facestream\nFace recognition against the gallery. " + service.describe())
        with gr.Tabs():
            _live_tab(service)
            _photo_tab(service)
            _verify_tab(service)
            _lookalike_tab(service)
            if allow_enrolment:
                _enrol_tab(service)
            if not service.config.demo.kiosk_mode:  # a kiosk lists nobody
                _gallery_tab(service, allow_delete=allow_enrolment and bool(service.config.demo.admin_token))
    return demo


def _live_tab(service: DemoService) -> None:
    with gr.Tab("Live", id="live"):
        gr.Markdown("Allow the camera, then press record: every frame is tracked and named as in `facestream run`.")
        with gr.Row():
            cam = gr.Image(label="Webcam", sources=["webcam"], streaming=True, type="numpy")
            out = gr.Image(label="Recognised", type="numpy", format="jpeg", interactive=False, elem_id="live-output")
        status = gr.Markdown(elem_id="live-status")
        session = gr.State(None)

        @_friendly
        def live(frame: np.ndarray | None, state: Any) -> tuple[Any, Any, str]:
            if frame is None:
                return None, state, ""
            if state is None:
                state = service.new_live_session()
            annotated, summary = service.live_frame(state, frame)
            return annotated, state, summary

        cam.stream(
            live, [cam, session], [out, session, status], api_name="live",
            stream_every=0.1, time_limit=600, concurrency_limit=4, show_progress="hidden",
        )


def _photo_tab(service: DemoService) -> None:
    with gr.Tab("Photo", id="photo"):
        with gr.Row():
            photo = photo_input("Group photo", elem_id="photo-input")
            out = gr.Image(label="Recognised", type="numpy", format="jpeg", interactive=False,
                           elem_id="photo-output")
        button = gr.Button("Recognise faces", variant="primary")
        status = gr.Markdown(elem_id="photo-status")
        table = gr.Dataframe(headers=FACE_COLUMNS, label="Faces", interactive=False, elem_id="photo-faces")
        last = gr.State(None)  # the recognised faces, for corrections

        @_friendly
        def identify(path: str | None, request: gr.Request) -> tuple[np.ndarray, dict[str, Any], str, Any]:
            service.admit("request", _visitor(request))
            result = service.identify(_photo(path))
            rows = [[f.index, f.name, f.similarity_text, f.sure_text, f.box_text] for f in result.faces]
            return result.annotated, _table(rows, FACE_COLUMNS), result.summary, result

        button.click(identify, photo, [out, table, status, last], api_name="identify")
        if service.config.demo.allow_enrolment:
            _corrections(service, last)


def _corrections(service: DemoService, last: gr.State) -> None:
    """Under the Photo tab: mark a recognised face as "not this person" or "this is X", and undo it."""
    with gr.Accordion("Correct a face", open=False):
        with gr.Row():
            face = gr.Number(label="Face (number in the table)", value=1, precision=0, minimum=1)
            who = gr.Textbox(label="Name (for 'This is…'; optional for 'Not…')", placeholder="Ada Lovelace")
        admin = _admin_box(service)
        with gr.Row():
            not_button = gr.Button("Not this person", variant="stop")
            is_button = gr.Button("This is…")
            undo_button = gr.Button("Undo")
        result = gr.Markdown(elem_id="correction-status")
        done = gr.State(None)  # the last correction's id

        @_friendly
        def correct(state: Any, number: float | None, person: str | None, token: str | None, verdict: str
                    ) -> tuple[str, Any]:
            fb = service.correct(state, int(number or 0), verdict, person, token)
            what = f"not **{md(fb.name)}**" if fb.verdict == "not" else f"**{md(fb.name)}**"
            note = f" ({md(fb.detail)})" if fb.detail else ""
            return f"Face {int(number or 0)} is {what}{note}. Press Undo to take it back.", fb.id

        not_button.click(lambda s, n, p, t: correct(s, n, p, t, "not"), [last, face, who, admin], [result, done],
                         api_name="not_this_person")
        is_button.click(lambda s, n, p, t: correct(s, n, p, t, "is"), [last, face, who, admin], [result, done],
                        api_name="this_is")

        @_friendly
        def undo(feedback_id: str | None, token: str | None) -> tuple[str, Any]:
            if not feedback_id:
                raise FacestreamError("Nothing to undo.", "Correct a face first.")
            fb = service.undo(feedback_id, token)
            return f"Undone: {'not ' if fb.verdict == 'not' else ''}**{md(fb.name)}**.", None

        undo_button.click(undo, [done, admin], [result, done], api_name="undo_correction")


def _admin_box(service: DemoService) -> gr.Textbox:
    """The admin token field: what unlocks changing enrolled people (hidden when the demo has no admin token)."""
    return gr.Textbox(label="Admin token (to change people already enrolled)", type="password",
                      visible=bool(service.config.demo.admin_token), value="")


def _verify_tab(service: DemoService) -> None:
    with gr.Tab("Verify", id="verify") as tab:
        gr.Markdown("Is it the same person? Compare two photos, or a photo with someone enrolled.")
        with gr.Row():
            photo_a = photo_input("Photo", elem_id="verify-a")
            with gr.Column():
                photo_b = photo_input("Second photo", elem_id="verify-b")
                person = gr.Dropdown(
                    label="...or an enrolled person (leave empty to use the second photo)",
                    choices=service.person_choices(), value=None, allow_custom_value=True,
                )
        button = gr.Button("Verify", variant="primary")
        verdict = gr.Markdown(elem_id="verify-verdict")

        @_friendly
        def verify(path_a: str | None, path_b: str | None, who: str | None, request: gr.Request) -> str:
            service.admit("request", _visitor(request))
            a = _photo(path_a, "the first photo")
            if who:
                return service.verify_person(a, who).markdown()
            return service.verify_photos(a, _photo(path_b, "the second photo (or pick a person)")).markdown()

        button.click(verify, [photo_a, photo_b, person], verdict, api_name="verify")

        gr.Markdown("Or prove it is you, present: a 2-3 s video of your face turning a little (a photo held up "
                    "to the camera does not pass).")
        with gr.Row():
            clip = gr.Video(label="Short video of the face", sources=["upload", "webcam"], elem_id="verify-clip")
            clip_person = gr.Dropdown(label="Enrolled person", choices=service.person_choices(), value=None,
                                      allow_custom_value=True)
        clip_button = gr.Button("Verify with liveness")
        clip_verdict = gr.Markdown(elem_id="verify-clip-verdict")

        @_friendly
        def verify_video(path: str | None, who: str | None, request: gr.Request) -> str:
            service.admit("request", _visitor(request))
            if not path:
                raise FacestreamError("No video given.", "Record or upload a 2-3 s video of the face.")
            if not who:
                raise FacestreamError("No person chosen.", "Pick the enrolled person to check against.")
            return service.verify_clip(Path(path).read_bytes(), who).markdown()

        clip_button.click(verify_video, [clip, clip_person], clip_verdict, api_name="verify_clip")
        tab.select(lambda: gr.Dropdown(choices=service.person_choices()), None, person, api_name=False)
        tab.select(lambda: gr.Dropdown(choices=service.person_choices()), None, clip_person, api_name=False)


def _lookalike_tab(service: DemoService) -> None:
    with gr.Tab("Look-alike", id="lookalike"):
        with gr.Row():
            photo = photo_input("Your photo (one face)", elem_id="lookalike-input")
            with gr.Column():
                gallery = gr.Gallery(label="Closest enrolled people", columns=5, height=260, object_fit="contain")
                table = gr.Dataframe(headers=LOOKALIKE_COLUMNS, label="Similarity", interactive=False)
        button = gr.Button("Find look-alikes", variant="primary")

        @_friendly
        def lookalike(path: str | None, request: gr.Request) -> tuple[list[tuple[np.ndarray, str]], dict[str, Any]]:
            service.admit("request", _visitor(request))
            matches = service.lookalike(_photo(path))
            if not matches:
                raise FacestreamError("The gallery is empty.", "Enrol some people first.")
            # a kiosk returns no chips: names and scores only
            items = [(m.chip, f"{m.rank}. {m.name} ({m.similarity:.3f})") for m in matches if m.chip is not None]
            rows = [[m.rank, m.name, round(m.similarity, 4), "yes" if m.same else "no"] for m in matches]
            return items, _table(rows, LOOKALIKE_COLUMNS)

        button.click(lookalike, photo, [gallery, table], api_name="lookalike")


def _enrol_tab(service: DemoService) -> None:
    with gr.Tab("Enrol", id="enrol"):
        gr.Markdown("Enrol a new person. Adding photos to someone already enrolled needs the admin token.")
        name = gr.Textbox(label="Name", placeholder="Ada Lovelace")
        files = gr.File(label="Photos (one face each)", file_count="multiple", file_types=list(IMAGE_SUFFIXES),
                        elem_id="enrol-files")
        admin = _admin_box(service)
        button = gr.Button("Enrol", variant="primary")
        status = gr.Markdown()
        table = gr.Dataframe(headers=ENROL_COLUMNS, label="Per photo", interactive=False)

        @_friendly
        def enroll(who: str | None, paths: list[str] | None, token: str | None,
                   request: gr.Request) -> tuple[dict[str, Any], str]:
            service.admit("enrolment", _visitor(request))
            if not paths:
                raise FacestreamError("No photos given.", "Add one or more photos of the person.")
            report = service.enroll(who or "", [Path(p) for p in paths], token)
            rows = [[v.photo, v.verdict] for v in report.verdicts]
            return _table(rows, ENROL_COLUMNS), report.markdown()

        button.click(enroll, [name, files, admin], [table, status], api_name="enroll")


def _gallery_tab(service: DemoService, allow_delete: bool) -> None:
    with gr.Tab("Gallery", id="gallery") as tab:
        table = gr.Dataframe(headers=PEOPLE_COLUMNS, label="Enrolled people", interactive=False)
        refresh = gr.Button("Refresh")
        status = gr.Markdown()

        @_friendly
        def people() -> dict[str, Any]:
            rows = [[p.name, p.id, p.count, p.updated] for p in service.people()]
            return _table(rows, PEOPLE_COLUMNS)

        refresh.click(people, None, table, api_name="people")
        tab.select(people, None, table, api_name=False)
        if not allow_delete:
            return
        with gr.Row():
            who = gr.Dropdown(label="Person", choices=service.person_choices(), allow_custom_value=True, value=None)
            admin = _admin_box(service)
            delete_button = gr.Button("Delete", variant="stop")

        @_friendly
        def delete(person: str | None, token: str | None) -> tuple[str, dict[str, Any], Any]:
            if not person:
                raise FacestreamError("No person chosen.", "Pick the person to delete.")
            message = service.delete(person, token)
            return message, people(), gr.Dropdown(choices=service.person_choices(), value=None)

        delete_button.click(delete, [who, admin], [status, table, who], api_name="delete")
        tab.select(lambda: gr.Dropdown(choices=service.person_choices()), None, who, api_name=False)


def launch_demo(
    demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, block: bool = True, login: str | None = None
) -> gr.Blocks:
    """Serve the page locally (never a public share link).

    Args:
        block: wait until Ctrl-C; ``False`` returns at once with the server running (tests).
        login: ``"user:password"`` a visitor must sign in with (``demo.login``); None: no sign-in.
    """
    demo.queue(default_concurrency_limit=2)
    auth = None
    if login:
        user, _, password = login.partition(":")
        auth = (user, password)
    try:
        demo.launch(
            server_name=host, server_port=port, share=False, prevent_thread_lock=True, auth=auth,
            quiet=True, show_error=False, max_file_size=MAX_UPLOAD, ssr_mode=False, inbrowser=False,
        )
    except OSError as exc:
        raise FacestreamError(f"Cannot serve the demo on {host}:{port} ({exc}).", "Pick another --port.") from None
    log.info("demo at %s", demo.local_url)
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo
