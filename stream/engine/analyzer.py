"""The face engine for one image: detect -> 5-point landmarks -> align -> embed.

:class:`FaceAnalyzer` is what the CLI, the gallery enrolment, the live pipeline,
the demo and the trainer's preprocessing all use, so a face is turned into a
chip and an embedding in exactly one way everywhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from facestream.errors import FacestreamError
from facestream.gallery.decision import ImpostorTail
from facestream.stream.config import Config, MlflowConfig, expand_sqlite_uri, load_config
from facestream.stream.engine.align import align_faces
from facestream.stream.engine.detect import FaceDetector
from facestream.stream.engine.faces import Faces
from facestream.stream.engine.landmarks import LandmarkPredictor
from facestream.stream.engine.model_store import get_model, list_models
from facestream.stream.engine.runtimes import create_runtime

log = logging.getLogger(__name__)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class _built_once:  # noqa: N801 - used as a decorator, like functools.cached_property
    """A cached property whose first build holds the owner's ``_lock``.

    functools.cached_property stopped locking in Python 3.12, so two threads could
    each build an embedder. Once built, the value sits in the instance ``__dict__``
    and reads skip this descriptor (and the lock) entirely.
    """

    def __init__(self, build: Callable[[Any], Any]):
        self.build, self.name, self.__doc__ = build, build.__name__, build.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        with obj._lock:  # an RLock: building the embedder reads the spec, itself built here
            if self.name not in obj.__dict__:
                obj.__dict__[self.name] = self.build(obj)
            return obj.__dict__[self.name]


class FaceAnalyzer:
    """Detects, landmarks, aligns and embeds faces with the configured models.

    The parts are built lazily so that, say, ``facestream detect`` never loads
    the embedding model. Each part is safe to call from several threads.
    """

    def __init__(self, config: Config | None = None):
        self.config = config or load_config()
        self._lock = threading.RLock()

    @_built_once
    def detector(self):
        return FaceDetector(self.config.detector)

    @_built_once
    def landmarker(self):
        return LandmarkPredictor()

    @_built_once
    def spec(self):
        """The embedding model's :class:`facestream.stream.engine.model_store.ModelSpec` (prepared on first use).

        Raises:
            FacestreamError: the model named is not an embedder (a detector, say).
        """
        spec = get_model(self.config.embedder.model, tracking_uri=self._tracking_uri())
        if spec.task != "embed":
            raise FacestreamError(f"embedder.model={self.config.embedder.model} is a face detector, not an "
                                  "embedding model.", f"Use one of: {', '.join(list_models())}, or a trained model.")
        return spec

    def _tracking_uri(self) -> str | None:
        """The configured MLflow store for models:/ URIs; None (MLFLOW_TRACKING_URI, else default) if unchanged."""
        uri = self.config.mlflow.tracking_uri
        return None if uri == MlflowConfig().tracking_uri else expand_sqlite_uri(uri)

    @_built_once
    def embedder(self):
        return create_runtime(self.spec, self.config.embedder)

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def threshold(self) -> float:
        """Cosine similarity at or above which two faces are the same person, one photo against one photo
        (``match.threshold`` when set, else the model's calibrated 1:1 point)."""
        t = self.config.match.threshold
        return float(self.spec.threshold if t is None else t)

    @property
    def impostor_tail(self) -> ImpostorTail | None:
        """The model's impostor tail (open-set decisions), or None when it has none."""
        tail = self.spec.impostor_tail
        return ImpostorTail.from_json(tail) if tail else None

    def detect(self, rgb: np.ndarray, with_landmarks: bool = True) -> Faces:
        """Find every face; with landmarks by default, since alignment needs them."""
        faces = self.detector.detect(rgb)
        if with_landmarks and len(faces):
            faces.landmarks = self.landmarker.predict(rgb, faces.xyxy)
        return faces

    def chips(self, rgb: np.ndarray, faces: Faces) -> np.ndarray:
        """Aligned face chips (n, S, S, 3) uint8 RGB, as the embedding model expects them."""
        if faces.landmarks is None:
            faces.landmarks = self.landmarker.predict(rgb, faces.xyxy)
        return align_faces(rgb, faces.landmarks, size=self.spec.input_size, padding=self.spec.padding)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings (n, D) for aligned chips, batched by the engine."""
        if len(chips) == 0:
            return np.zeros((0, self.spec.embedding_dim), np.float32)
        return l2_normalize(self.embedder.run(chips))

    def embed(self, rgb: np.ndarray, faces: Faces) -> Faces:
        """Fill ``faces.embedding`` (in place, also returned)."""
        faces.embedding = self.embed_chips(self.chips(rgb, faces))
        return faces

    def analyze(self, rgb: np.ndarray) -> Faces:
        """Detect, landmark and embed every face in an RGB image."""
        faces = self.detect(rgb)
        return self.embed(rgb, faces) if len(faces) else faces

    def largest_face(self, rgb: np.ndarray, source: str = "the image") -> tuple[Faces, int]:
        """The largest face of a photo, embedded, and how many faces the photo has.

        1:1 verification and single-photo enrolment use the largest face: in a
        portrait it is the subject, and bystanders are smaller.

        Raises:
            FacestreamError: no face in the photo.
        """
        faces = self.detect(rgb, with_landmarks=False)
        if len(faces) == 0:
            raise FacestreamError(
                f"No face found in {source}.", "Use a photo where the face is visible and at least ~40 px wide."
            )
        largest = faces[int((faces.width * faces.height).argmax())]
        return self.embed(rgb, largest), len(faces)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """Cosine similarity of two L2-normalised embeddings."""
        return float(np.dot(a, b))
