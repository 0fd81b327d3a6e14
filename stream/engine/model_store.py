"""The runtime's view of embedding models: a spec, a cache, and where to get them.

A model directory holds ``model.onnx``, optionally ``weights.pt`` (a torch
state_dict) and ``spec.json`` (a :class:`ModelSpec`). Everything that embeds
faces (ONNX Runtime, TensorRT and torch engines, the gallery, the trainer's
evaluation) reads the spec instead of guessing from tensor shapes, so any model
directory — the converted dlib ResNet, a fine-tuned model from the trainer, one
downloaded from MLflow — is used the same way.

The built-in dlib ResNet is converted once (numpy reader -> torch -> ONNX) into
``cache_dir()/models/<model_id>/``; ``model_id`` includes the hash of the source
file, so a different ``.dat`` never reuses a stale conversion, and the gallery,
which keys embeddings by ``model_id``, never mixes descriptors of two models.
This module imports ``trainer`` only lazily, inside that one-time preparation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from facestream.errors import FacestreamError
from facestream.stream.config import MlflowConfig, expand_sqlite_uri
from facestream.stream.engine.operating_points import DLIB_RESNET_V1
from facestream.stream.engine.package_models import (
    DLIB_RESNET,
    blazeface_file,
    dlib_model_file,
    face_mesh_file,
)

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "weights.pt"
SPEC_VERSION = 1
MLFLOW_SCHEMES = ("models:/", "runs:/")
_PREPARE_LOCK = threading.Lock()  # threads of one process convert once; processes race safely via rename


@dataclass(frozen=True)
class ModelSpec:
    """Everything an engine and the aligner need to know about one embedding model.

    Attributes:
        name: human name, e.g. ``"dlib-resnet-v1"`` or a fine-tuned model's name.
        model_id: unique per weights (``"<name>@<12 hex of a sha256>"``); the
            gallery keys stored embeddings by it.
        onnx_path: the ONNX file (input ``NCHW float32`` already normalised,
            output the raw, not normalised, embedding).
        input_size: chip side in pixels (square chips).
        padding: dlib chip padding around the landmark template (0.25 for dlib).
        landmarks: landmark set the chip template expects (``"dlib5"``).
        mean: per-channel mean in pixel units, RGB order.
        std: divisor; engines feed ``(pixel - mean) / std``.
        embedding_dim: length of the model's output row: the embedding (for a detector: anchors x 17).
        threshold: cosine similarity at or above which two faces are the same person, one photo against
            one photo (embedders: the 1:1 operating point).
        impostor_tail: the measured share of strangers scoring each similarity against one enrolled
            face (:class:`facestream.gallery.decision.ImpostorTail` as JSON), for open-set decisions;
            None = the model has none (faces are named at ``threshold``).
        architecture: name in ``facestream.stream.engine.networks`` for the torch engine.
        weights_path: torch state_dict for ``architecture`` (None: ONNX only).
    """

    name: str
    model_id: str
    onnx_path: Path
    input_size: int = 150
    padding: float = 0.25
    landmarks: str = "dlib5"
    mean: tuple[float, float, float] = (122.782, 117.001, 104.298)
    std: float = 256.0
    embedding_dim: int = 128
    threshold: float = 0.92
    architecture: str | None = "dlib_resnet"
    weights_path: Path | None = None
    task: Literal["embed", "detect", "mesh"] = "embed"
    impostor_tail: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Normalise types so specs built by hand and specs read from JSON compare equal.
        object.__setattr__(self, "onnx_path", Path(self.onnx_path))
        if self.weights_path is not None:
            object.__setattr__(self, "weights_path", Path(self.weights_path))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        if len(self.mean) != 3:
            raise ValueError(f"mean needs 3 values (RGB), got {self.mean}")

    @property
    def output_dim(self) -> int:
        """Floats per image that the model returns (what the runtimes allocate)."""
        return self.embedding_dim

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        """JSON-ready dict; paths inside ``relative_to`` are stored relative so the directory can move."""
        d = dataclasses.asdict(self)

        def rel(p: Path | None) -> str | None:
            if p is None:
                return None
            if relative_to is not None:
                try:
                    return str(Path(p).resolve().relative_to(Path(relative_to).resolve()))
                except ValueError:
                    pass
            return str(p)

        d["onnx_path"] = rel(self.onnx_path)
        d["weights_path"] = rel(self.weights_path)
        d["mean"] = list(self.mean)
        d["spec_version"] = SPEC_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: Path | None = None) -> ModelSpec:
        """Build from :meth:`to_dict` output; relative paths are resolved against ``base``."""
        d = dict(d)
        d.pop("spec_version", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown spec fields: {', '.join(unknown)}")
        for key in ("onnx_path", "weights_path"):
            if d.get(key) is not None and base is not None and not Path(d[key]).is_absolute():
                d[key] = Path(base) / d[key]
        return cls(**d)

    def save(self, directory: str | Path) -> Path:
        """Write ``spec.json`` into ``directory`` (created if needed); returns its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / SPEC_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(relative_to=directory), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ModelSpec:
        """Read a model directory (or its ``spec.json``) and check that its files exist.

        Raises:
            FacestreamError: no spec.json, an unreadable spec, or a missing model file.
        """
        directory = Path(directory).expanduser()
        if directory.is_file() and directory.name == SPEC_FILE:
            directory = directory.parent
        path = directory / SPEC_FILE
        if not path.is_file():
            raise FacestreamError(
                f"{directory} is not a model directory (no {SPEC_FILE}).",
                "Pass a directory written by `facestream train`/`prepare_model`, or a model name "
                f"({', '.join(list_models())}).",
            )
        try:
            spec = cls.from_dict(json.loads(path.read_text()), base=directory)
        except (ValueError, TypeError) as exc:
            raise FacestreamError(f"{path} is not a valid model spec: {exc}.", "Re-export the model.") from None
        if not spec.onnx_path.is_file():
            raise FacestreamError(
                f"Model file {spec.onnx_path} named in {path} is missing.", "Re-export or re-download the model."
            )
        if spec.weights_path is not None and not spec.weights_path.is_file():
            raise FacestreamError(
                f"Weights file {spec.weights_path} named in {path} is missing.", "Re-export or re-download the model."
            )
        return spec


# --------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """Where converted models live: ``$FACESTREAM_CACHE``, else ``~/.cache/facestream``."""
    env = os.environ.get("FACESTREAM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "facestream"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (the dlib model is ~22 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Builtin:
    """A model the runtime knows by name: where its source is and how to convert it."""

    name: str
    source: Callable[[], Path]
    convert: Callable[[Path, Path, str], ModelSpec]
    description: str
    # Calibrated by bench/calibrate.py; applied on every load so a recalibration
    # reaches caches prepared before it (the weights, and so model_id, are unchanged).
    threshold: float
    impostor_tail: dict[str, Any] | None = None

    def calibrated(self, spec: ModelSpec) -> ModelSpec:
        """The cached spec with this release's calibration."""
        return replace(spec, threshold=self.threshold, impostor_tail=self.impostor_tail)


def _dlib_resnet_source() -> Path:
    return dlib_model_file(DLIB_RESNET)


def _convert_dlib_resnet(source: Path, out_dir: Path, model_id: str) -> ModelSpec:
    """Read the .dat with numpy, rebuild it in torch, export ONNX, and write the spec into ``out_dir``."""
    import torch  # lazy: the runtime need not have torch unless it converts

    from facestream.stream.engine.export import export_onnx
    from facestream.stream.engine.networks.dlib_resnet import load_dlib_resnet

    t0 = time.perf_counter()
    model = load_dlib_resnet(source)
    log.info("read %s into torch in %.1f s", source.name, time.perf_counter() - t0)
    weights = out_dir / WEIGHTS_FILE
    torch.save(model.state_dict(), weights)
    t1 = time.perf_counter()
    export_onnx(model, out_dir / ONNX_FILE, input_size=150)
    log.info("exported and verified ONNX in %.1f s", time.perf_counter() - t1)
    spec = ModelSpec(
        name="dlib-resnet-v1",
        model_id=model_id,
        onnx_path=out_dir / ONNX_FILE,
        input_size=150,
        padding=0.25,
        landmarks="dlib5",
        mean=model.mean_rgb,
        std=256.0,
        embedding_dim=128,
        threshold=BUILTINS["dlib-resnet-v1"].threshold,
        architecture="dlib_resnet",
        weights_path=weights,
        extra={"source": str(source), "source_sha256": model_id.rsplit("@", 1)[-1]},
    )
    spec.save(out_dir)
    return spec


def _convert_blazeface(kind: str) -> Callable[[Path, Path, str], ModelSpec]:
    """The converter of one BlazeFace range: .tflite -> torch -> ONNX (checked against torch), into ``out_dir``."""

    def convert(source: Path, out_dir: Path, model_id: str) -> ModelSpec:
        import torch

        from facestream.stream.engine.blazeface import RANGES, ROW
        from facestream.stream.engine.export import export_onnx
        from facestream.stream.engine.networks.blazeface import load_blazeface

        options = RANGES[kind]
        model = load_blazeface(kind, source)
        torch.save(model.state_dict(), out_dir / WEIGHTS_FILE)
        # outputs are pixel offsets (up to ~200) and logits: 1e-3 is far below a pixel
        export_onnx(model, out_dir / ONNX_FILE, input_size=options.size, atol=1e-3, input_range=1.0)
        spec = ModelSpec(
            name=f"blazeface-{kind}", model_id=model_id, onnx_path=out_dir / ONNX_FILE, input_size=options.size,
            mean=(127.5, 127.5, 127.5), std=127.5, embedding_dim=options.num_anchors * ROW, threshold=0.0,
            architecture=f"blazeface_{kind}", weights_path=out_dir / WEIGHTS_FILE, task="detect",
            extra={"source": str(source), "source_sha256": model_id.rsplit("@", 1)[-1]},
        )
        spec.save(out_dir)
        return spec

    return convert


def _convert_face_mesh(source: Path, out_dir: Path, model_id: str) -> ModelSpec:
    """MediaPipe's face mesh: .tflite -> torch -> ONNX (checked against torch), one output row per face:
    468 x (x, y, z) in crop pixels, then the presence logit."""
    import torch

    from facestream.stream.engine.export import export_onnx
    from facestream.stream.engine.networks.face_mesh import MESH_INPUT, FlatFaceMesh, load_face_mesh

    model = load_face_mesh(source)
    torch.save(model.state_dict(), out_dir / WEIGHTS_FILE)
    # landmarks are crop pixels (0..192): 1e-2 of a pixel is far below the mesh's own jitter
    export_onnx(FlatFaceMesh(model), out_dir / ONNX_FILE, input_size=MESH_INPUT, atol=1e-2, input_range=0.5)
    spec = ModelSpec(
        name="face-mesh", model_id=model_id, onnx_path=out_dir / ONNX_FILE, input_size=MESH_INPUT,
        mean=(0.0, 0.0, 0.0), std=255.0, embedding_dim=468 * 3 + 1, threshold=0.0, architecture="face_mesh",
        weights_path=out_dir / WEIGHTS_FILE, task="mesh",
        extra={"source": str(source), "source_sha256": model_id.rsplit("@", 1)[-1]},
    )
    spec.save(out_dir)
    return spec


BUILTINS: dict[str, _Builtin] = {
    "dlib-resnet-v1": _Builtin(
        name="dlib-resnet-v1",
        source=_dlib_resnet_source,
        convert=_convert_dlib_resnet,
        description="dlib's face recognition ResNet (29 conv layers, 150x150 RGB chips, 128-d, 99.38% LFW)",
        # dlib's published boundary (Euclidean 0.6 between raw descriptors) as cosine, and the
        # impostor tail for open-set decisions: both measured on the LFW calibration set
        # (stream/engine/operating_points.py, bench/calibrate.py).
        threshold=DLIB_RESNET_V1["verify_threshold"],
        impostor_tail=DLIB_RESNET_V1["tail"],
    ),
    "blazeface-short": _Builtin(
        name="blazeface-short",
        source=lambda: blazeface_file("short"),
        convert=_convert_blazeface("short"),
        description="MediaPipe's BlazeFace short range (128x128, faces within ~2 m), ported from its .tflite",
        threshold=0.0,
    ),
    "blazeface-full": _Builtin(
        name="blazeface-full",
        source=lambda: blazeface_file("full"),
        convert=_convert_blazeface("full"),
        description="MediaPipe's BlazeFace full range (192x192, faces within ~5 m), ported from its .tflite",
        threshold=0.0,
    ),
    "face-mesh": _Builtin(
        name="face-mesh",
        source=face_mesh_file,
        convert=_convert_face_mesh,
        description="MediaPipe's face mesh (468 landmarks in 3D, 192x192 crops), ported from its .tflite (liveness)",
        threshold=0.0,
    ),
}
DETECTORS = ("blazeface-full", "blazeface-short")
HELPERS = ("face-mesh",)  # prepared with the detectors; neither embedder nor detector


def list_models(task: str | None = "embed") -> list[str]:
    """Built-in model names :func:`get_model` and :func:`prepare_model` accept: the embedders (``task="embed"``),
    the detectors (``"detect"``), or all (``None``)."""
    def kind(name: str) -> str:
        return "detect" if name in DETECTORS else "mesh" if name in HELPERS else "embed"

    return sorted(name for name in BUILTINS if task is None or kind(name) == task)


def _unknown_model(name: str) -> FacestreamError:
    return FacestreamError(
        f"Unknown model '{name}'.",
        f"Use one of: {', '.join(list_models())}; a model directory with {SPEC_FILE}; "
        "or an MLflow URI (models:/NAME/VERSION, runs:/RUN_ID/PATH).",
    )


def prepare_model(name: str = "dlib-resnet-v1", force: bool = False) -> ModelSpec:
    """Convert a built-in model once and return its spec; later calls reuse the cache.

    The output directory is named by ``model_id`` (which contains the source
    file's hash) and is written in a temporary directory then renamed, so an
    interrupted conversion never leaves a half-written model behind and two
    processes preparing at once both end with a complete directory.

    Args:
        name: a name from :func:`list_models`.
        force: convert again even if the cache has the model.

    Raises:
        FacestreamError: unknown name, or the source file is missing.
    """
    builtin = BUILTINS.get(name)
    if builtin is None:
        raise _unknown_model(name)
    with _PREPARE_LOCK:
        return _prepare(builtin, force)


def _prepare(builtin: _Builtin, force: bool) -> ModelSpec:
    name = builtin.name
    source = builtin.source()
    model_id = f"{name}@{file_sha256(source)[:12]}"
    root = cache_dir() / "models"
    target = root / model_id
    if not force and (target / SPEC_FILE).is_file():
        try:
            return builtin.calibrated(ModelSpec.load(target))
        except FacestreamError as exc:
            log.warning("cached model %s is broken (%s); converting again", target, exc)
    log.info("preparing %s from %s into %s (one time)", model_id, source, target)
    t0 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_id}.", dir=root))
    try:
        builtin.convert(source, tmp, model_id)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
        if target.exists():
            # force, or a broken cache: move the old one aside first so the rename can land.
            old = Path(tempfile.mkdtemp(prefix=f".{model_id}.old.", dir=root))
            os.replace(target, old / "m")
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / SPEC_FILE).is_file():  # not just another process winning the race
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("prepared %s in %.1f s", model_id, time.perf_counter() - t0)
    return builtin.calibrated(ModelSpec.load(target))


# --------------------------------------------------------------------------- resolution


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:120] or "model"


def _find_spec_dir(root: Path) -> Path | None:
    if (root / SPEC_FILE).is_file():
        return root
    found = sorted(root.rglob(SPEC_FILE), key=lambda p: len(p.parts))
    return found[0].parent if found else None


def _default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the configured default store (where the trainer logs)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return expand_sqlite_uri(MlflowConfig().tracking_uri)


def _resolve_models_uri(uri: str, tracking_uri: str) -> str:
    """The artifact location behind ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``models:/NAME/STAGE``.

    facestream keeps its model registry in the tracking store, so both URIs are the same.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    ref = uri[len("models:/"):].strip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = client.get_model_version_by_alias(name, alias).version
    else:
        name, _, which = ref.partition("/")
        if which.isdigit():
            version = which
        else:
            stages = None if which in ("", "latest") else [which]
            versions = client.get_latest_versions(name, stages=stages)
            if not versions:
                raise FacestreamError(f"Model {name} has no version{' in ' + which if stages else ''}.",
                                      "Register one with `facestream train`.")
            version = max(versions, key=lambda v: int(v.version)).version
    return client.get_model_version_download_uri(name, version)


def _from_mlflow(uri: str, tracking_uri: str | None) -> ModelSpec:
    """Download an MLflow model's artifacts into the cache and load the model directory inside."""
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise FacestreamError(
            f"Loading {uri} needs MLflow, which is not installed.", "pip install 'facestream[train]'"
        ) from None
    tracking_uri = tracking_uri or _default_tracking_uri()
    root = cache_dir() / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    target = root / _slug(uri)
    tmp = Path(tempfile.mkdtemp(prefix=".dl.", dir=root))
    log.info("downloading %s from MLflow (%s)", uri, tracking_uri)
    try:
        # Resolve with an explicit client: setting mlflow's global tracking/registry
        # URIs (and "restoring" them) would pin them for everything else in the process.
        source = _resolve_models_uri(uri, tracking_uri) if uri.startswith("models:/") else uri
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp), tracking_uri=tracking_uri)
        )
    except Exception as exc:  # MlflowException, connection errors, bad URIs: all mean "cannot get it"
        shutil.rmtree(tmp, ignore_errors=True)
        text = (exc.message if isinstance(exc, MlflowException) else str(exc)).strip().splitlines()
        detail = text[0] if text else type(exc).__name__
        if "Failed to establish" in detail or "Max retries" in detail or "Connection refused" in detail:
            raise FacestreamError(
                f"The MLflow tracking server {tracking_uri} is not reachable (needed for {uri}).",
                "Start it, or point mlflow.tracking_uri / MLFLOW_TRACKING_URI at the right server.",
            ) from None
        raise FacestreamError(
            f"MLflow could not provide {uri}: {detail.rstrip('.')}.",
            f"Check the model name/version or run id, and the tracking store ({tracking_uri}).",
        ) from None
    spec_dir = _find_spec_dir(local if local.is_dir() else local.parent)
    if spec_dir is None:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FacestreamError(
            f"{uri} has no {SPEC_FILE}, so it is not a facestream model directory.",
            "Log the whole model directory (model.onnx, weights.pt, spec.json) from the trainer.",
        )
    rel = spec_dir.relative_to(tmp)
    os.chmod(tmp, 0o755)
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:  # another process put it there first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return ModelSpec.load(target / rel)


def get_model(name_or_path_or_uri: str | Path, tracking_uri: str | None = None) -> ModelSpec:
    """Resolve what the user named into a ready model spec.

    Accepts a registry name (converted on first use), a model directory or its
    ``spec.json``/``model.onnx``, or an MLflow ``models:/``/``runs:/`` URI
    (``tracking_uri`` or ``MLFLOW_TRACKING_URI`` says which server).

    Raises:
        FacestreamError: unknown name (listing valid ones), missing files, MLflow unreachable.
    """
    text = str(name_or_path_or_uri).strip()
    if text in BUILTINS:
        return prepare_model(text)
    if text.startswith(MLFLOW_SCHEMES):
        return _from_mlflow(text, tracking_uri)
    path = Path(text).expanduser()
    if path.exists():
        if path.is_file() and (path.name in (SPEC_FILE, ONNX_FILE) or path.suffix == ".onnx"):
            path = path.parent
        return ModelSpec.load(path)
    if "/" in text or os.sep in text or text.endswith((".onnx", ".json")):
        raise FacestreamError(f"Model path {path} does not exist.", "Check the path, or use a model name.")
    raise _unknown_model(text)


def model_info(spec: ModelSpec) -> dict[str, Any]:
    """A flat, JSON-ready description for ``facestream models info``."""
    info = spec.to_dict()
    info.pop("spec_version", None)
    info["onnx_bytes"] = spec.onnx_path.stat().st_size if spec.onnx_path.is_file() else None
    info["weights_bytes"] = (
        spec.weights_path.stat().st_size if spec.weights_path and spec.weights_path.is_file() else None
    )
    info["directory"] = str(spec.onnx_path.parent)
    builtin = BUILTINS.get(spec.name)
    if builtin is not None:
        info["description"] = builtin.description
    return info
