"""The HTTP API: identify, verify, enrol and people, on the gateway and on ``facestream run``.

Routes live under ``/api`` beside the products' routes (attendance: :mod:`facestream.stream.attendance.web`);
the description is at ``/api/openapi.json`` and the interactive docs at ``/api/docs``. Access
(Host, Origin, token) is the server's :class:`facestream.stream.serve.access.Guard`, the same as
for the websocket. Uploads are bounded (``MAX_UPLOAD_BYTES`` per request, the process-wide pixel
limit per image, checked before decoding); a bad image is one clear error (HTTP 400), never a
traceback. Models load on the first request that needs them; work runs off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, File, Form, UploadFile
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facestream.errors import FacestreamError, NotFound
from facestream.gallery.store import GalleryStore, check_metadata
from facestream.stream.config import Config
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.imageio import load_image
from facestream.stream.recognition.clip_check import MAX_CLIP_FRAMES, read_clip, verify_clip
from facestream.stream.recognition.enroll import Enroller, Photo
from facestream.stream.recognition.identify import (
    compare_photos,
    identify,
    open_gallery,
    open_matcher,
    results_to_json,
    verify,
)
from facestream.stream.serve.http_api import TooLarge, new_api

MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # one request: a few phone photos
MAX_FILES = 20


class LimitBody:
    """ASGI middleware: refuse request bodies over ``limit`` bytes (HTTP 413), by the declared length and
    while they stream in (a chunked upload cannot go past it either)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise TooLarge(f"The upload is larger than {self.limit // 2**20} MB.",
                               "Send smaller photos, or fewer at a time.")
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = json.dumps({"error": f"The upload is larger than {self.limit // 2**20} MB.",
                           "fix": "Send smaller photos, or fewer at a time."}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class Recognition:
    """The models and the gallery behind the API, opened once on first use and shared (thread-safe)."""

    def __init__(self, config: Config, analyzer: FaceAnalyzer | None = None, store: GalleryStore | None = None):
        self.config = config
        self._analyzer = analyzer
        self._store = store
        self._matcher: Any = None
        self._lock = threading.Lock()

    @property
    def analyzer(self) -> FaceAnalyzer:
        with self._lock:
            if self._analyzer is None:
                self._analyzer = FaceAnalyzer(self.config)
            return self._analyzer

    @property
    def store(self) -> GalleryStore:
        with self._lock:
            if self._store is None:
                self._store = open_gallery(self.config)
            return self._store

    @property
    def matcher(self) -> Any:
        analyzer, store = self.analyzer, self.store
        with self._lock:
            if self._matcher is None:
                self._matcher = open_matcher(analyzer, store)
            return self._matcher

    def close(self) -> None:
        if self._matcher is not None:
            self._matcher.close()


async def _image(upload: UploadFile, what: str = "image") -> np.ndarray:
    data = await upload.read()
    if not data:
        raise FacestreamError(f"The {what} ({upload.filename or 'upload'}) is empty.", "Send a JPEG or PNG photo.")
    return load_image(data)


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


# Erases a person (by id) everywhere this deployment keeps them; what was erased, as JSON.
Erase = Callable[[GalleryStore, str], dict[str, Any]]


def build_api(config: Config, recognition: Recognition | None = None, *, erase: Erase) -> FastAPI:
    """The API app (mount at ``/api``; extensions add their routes to it).

    Args:
        erase: how ``DELETE /people/{ref}`` erases: the composition root passes the one erasure every path
            uses (attendance first, then the gallery), so the API never leaves a person half-deleted.
    """
    rec = recognition or Recognition(config)
    app = new_api()
    app.include_router(recognition_router(config, rec))
    app.include_router(people_router(rec, erase))
    app.add_middleware(LimitBody, limit=MAX_UPLOAD_BYTES)
    return app


async def _off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """Model and store work runs on a worker thread, never on the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def recognition_router(config: Config, rec: Recognition) -> APIRouter:
    """``/identify`` (every face in a photo) and ``/verify`` (1:1, with liveness from a clip)."""
    router = APIRouter(tags=["recognition"])

    @router.post("/identify", summary="Every face in a photo: box, name (or unknown), score")
    async def identify_photo(image: UploadFile = File(..., description="a JPEG/PNG/WebP photo"),
                             top_k: int = Form(3, ge=1, le=20)) -> JSONResponse:
        rgb = await _image(image)

        def run() -> dict[str, Any]:
            faces, results = identify(rec.analyzer, rec.matcher, rgb, top_k=top_k)
            return {"width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "model": rec.analyzer.model_id,
                    "faces": results_to_json(faces, results)}

        return JSONResponse(await _off_loop(run))

    @router.post("/verify",
                 summary="1:1: are two photos the same person, is a photo (or a short clip) this enrolled person, "
                         "and is the face live?")
    async def verify_photos(image: UploadFile | None = File(None), image2: UploadFile | None = File(None),
                            person: str | None = Form(None, description="an enrolled name or id"),
                            clip: UploadFile | None = File(None, description="a 1-4 s video of the face"),
                            frames: list[UploadFile] | None = File(None, description="consecutive frames, in order"),
                            liveness: bool | None = Form(
                                None, description="the answer's `verified` needs a live face (default: true when "
                                "liveness.mode is require)")) -> JSONResponse:
        require = config.liveness.mode == "require" if liveness is None else bool(liveness)
        if clip is not None or frames:
            return JSONResponse(await _verify_moving(rec, person, image, image2, clip, frames, require))
        if image is None or (image2 is None) == (not person):
            raise FacestreamError("Send an image with a second image (image2) or an enrolled person (person); or a "
                                  "clip (or frames) with a person.",
                                  "POST image + image2, image + person, or clip + person.")
        if require:
            raise FacestreamError("Liveness cannot be judged from one photo.",
                                  "POST a short clip (or several consecutive frames) with the person, "
                                  "or liveness=false.")
        rgb = await _image(image)
        rgb2 = await _image(image2, "second image") if image2 is not None else None

        def run() -> dict[str, Any]:
            if rgb2 is None:
                return verify(rec.analyzer, rec.matcher, rgb, str(person)).to_json()
            c = compare_photos(rec.analyzer, rgb, rgb2, "image", "image2")
            return {"same_person": c.same, "similarity": round(c.similarity, 4), "threshold": round(c.threshold, 4),
                    "model": c.model, "faces_in_image": c.faces_in_a, "faces_in_image2": c.faces_in_b}

        return JSONResponse(await _off_loop(run))

    return router


async def _verify_moving(rec: Recognition, person: str | None, image: UploadFile | None, image2: UploadFile | None,
                         clip: UploadFile | None, frames: list[UploadFile] | None, require: bool) -> dict[str, Any]:
    """``/verify`` with a clip or frames: the match and the liveness verdict of the track."""
    if not person or image is not None or image2 is not None:
        raise FacestreamError("A clip (or frames) is checked against an enrolled person only.",
                              "POST clip (or frames) + person, without image or image2.")
    if clip is not None and frames:
        raise FacestreamError("Send a clip or frames, not both.", "POST one video, or several frames.")
    if frames and len(frames) > MAX_CLIP_FRAMES:
        raise FacestreamError(f"{len(frames)} frames; at most {MAX_CLIP_FRAMES}.", "Send 1-4 s of frames.")
    video = await clip.read() if clip is not None else None
    stills = [await _image(f, f"frame {i + 1}") for i, f in enumerate(frames or [])]

    def run_clip() -> dict[str, Any]:
        shots = read_clip(video, "the clip") if video is not None else stills
        return verify_clip(rec.analyzer, rec.matcher, shots, str(person), require).to_json()

    return await _off_loop(run_clip)


def people_router(rec: Recognition, erase: Erase) -> APIRouter:
    """``/enroll``, ``/people``, ``/people/{ref}`` (read and erase)."""
    router = APIRouter(tags=["people"])

    @router.post("/enroll", summary="Enrol photos of one person (a verdict per photo)")
    async def enroll(name: str = Form(..., max_length=200), images: list[UploadFile] = File(...),
                     metadata: str | None = Form(None, description='JSON object, e.g. {"group": "cs101"}'),
                     accept_flagged: bool = Form(False)) -> JSONResponse:
        if len(images) > MAX_FILES:
            raise FacestreamError(f"{len(images)} photos in one request; at most {MAX_FILES}.", "Send fewer.")
        meta: dict[str, Any] = {}
        if metadata:
            try:
                meta = check_metadata(json.loads(metadata))
            except ValueError:
                raise FacestreamError("metadata is not a JSON object.", 'Send e.g. {"group": "cs101"}.') from None
        photos = []
        for i, upload in enumerate(images):
            photos.append(Photo(upload.filename or f"image {i + 1}", _constant(await upload.read())))

        def run() -> dict[str, Any]:
            enroller = Enroller(rec.analyzer, rec.store, progress=False, accept_flagged=accept_flagged,
                                allow_local=False)
            verdicts = enroller.enroll_person(name, photos, meta or None)
            person = rec.store.find_person(name)
            return {"person": person.to_json() if person else None,
                    "images": [v.to_json() for v in verdicts]}

        return JSONResponse(await _off_loop(run))

    @router.get("/people", summary="Everyone enrolled")
    async def people() -> JSONResponse:
        return JSONResponse([p.to_json() for p in await _off_loop(rec.store.list_people)])

    def _find(ref: str) -> Any:
        found = rec.store.find_person(ref)
        if found is None:
            raise NotFound(f"No person {ref!r}.", "GET /api/people lists everyone.")
        return found

    @router.get("/people/{ref}", summary="One person (by id or name)")
    async def person(ref: str) -> JSONResponse:
        return JSONResponse((await _off_loop(_find, ref)).to_json())

    @router.delete("/people/{ref}",
                   summary="Erase a person: embeddings, chips, corrections and attendance (one erase for every path)")
    async def delete_person(ref: str) -> JSONResponse:
        return JSONResponse(await _off_loop(lambda: erase(rec.store, _find(ref).id)))

    return router
