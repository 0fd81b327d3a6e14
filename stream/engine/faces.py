"""The central data types of one frame: :class:`Faces` (parallel arrays) and :class:`FrameResult`.

Like supervision's ``Detections``: one array per field, boolean-mask indexing,
no positional tuples. Fields that a stage has not filled yet are ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

UNKNOWN = "unknown"


@dataclass
class Faces:
    """Every face found in one frame.

    Attributes:
        xyxy: (n, 4) float32 boxes in pixels, x1 y1 x2 y2.
        score: (n,) float32 detector confidence.
        kps: (n, K, 2) float32 detector keypoints (MediaPipe: 6), or None.
        landmarks: (n, 5, 2) float32 dlib 5-point landmarks, or None.
        track_id: (n,) int64 track ids, -1 when untracked.
        embedding: (n, D) float32 L2-normalised embeddings, or None.
        identity: person id per face, None for unknown.
        name: display name per face, or "unknown".
        similarity: (n,) float32 cosine similarity to the matched person (nan when not matched).
        far: (n,) float32 how sure a name is: the estimated chance that a stranger scores as high against
            the gallery (nan when unknown, or when the matcher decides by a fixed threshold).
        quality: (n,) float32 how usable each face is for recognition, 0-1
            (:func:`facestream.stream.engine.quality.face_quality`), or None.
        liveness: (n,) float32 how likely each face's track is a head in the room, not a picture, 0-1
            (nan until its track has a verdict), or None when liveness is off.
        liveness_state: per face "live", "spoof" or "unknown" (its track's verdict), or None when off.
    """

    xyxy: np.ndarray
    score: np.ndarray
    kps: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    track_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    embedding: np.ndarray | None = None
    identity: list[str | None] | None = None
    name: list[str] | None = None
    similarity: np.ndarray | None = None
    far: np.ndarray | None = None
    quality: np.ndarray | None = None
    liveness: np.ndarray | None = None
    liveness_state: list[str] | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        if len(self.score) != len(self.xyxy):
            raise ValueError(f"{len(self.xyxy)} boxes but {len(self.score)} scores")
        self.track_id = np.asarray(self.track_id, dtype=np.int64).reshape(-1)
        if len(self.track_id) == 0:  # untracked (the default)
            self.track_id = np.full(len(self), -1, dtype=np.int64)

    @classmethod
    def empty(cls) -> Faces:
        return cls(xyxy=np.zeros((0, 4), np.float32), score=np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def is_empty(self) -> bool:
        return len(self) == 0

    def __getitem__(self, index: Any) -> Faces:
        """Select faces by boolean mask, integer array or slice; every field follows."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        idx = np.arange(len(self))[index]
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                out[f.name] = None
            elif isinstance(value, list):
                out[f.name] = [value[i] for i in idx]
            else:
                out[f.name] = value[idx]
        return Faces(**out)

    @staticmethod
    def merge(parts: list[Faces]) -> Faces:
        """Concatenate several Faces; a field missing in any part is dropped."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Faces.empty()
        out: dict[str, Any] = {}
        for f in fields(Faces):
            values = [getattr(p, f.name) for p in parts]
            if any(v is None for v in values):
                out[f.name] = None
            elif isinstance(values[0], list):
                out[f.name] = [x for v in values for x in v]
            else:
                out[f.name] = np.concatenate(values)
        return Faces(**out)

    @property
    def width(self) -> np.ndarray:
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    @property
    def height(self) -> np.ndarray:
        return self.xyxy[:, 3] - self.xyxy[:, 1]

    def to_json(self) -> list[dict[str, Any]]:
        """One plain dict per face, ready for ``json.dumps``."""
        items = []
        for i in range(len(self)):
            d: dict[str, Any] = {
                "box": [round(float(v), 1) for v in self.xyxy[i]],
                "score": round(float(self.score[i]), 4),
                "track_id": int(self.track_id[i]),
            }
            if self.landmarks is not None:
                d["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks[i]]
            if self.name is not None:
                d["name"] = self.name[i]
                d["person_id"] = self.identity[i] if self.identity is not None else None
            if self.similarity is not None:
                s = float(self.similarity[i])
                d["similarity"] = None if np.isnan(s) else round(s, 4)
            if self.far is not None:
                f = float(self.far[i])
                d["far"] = None if np.isnan(f) else float(f"{f:.3g}")
                d["confidence"] = None if np.isnan(f) else round(1.0 - f, 6)
            if self.quality is not None:
                d["quality"] = round(float(self.quality[i]), 3)
            if self.liveness_state is not None:
                d["liveness_state"] = self.liveness_state[i]
                live = float(self.liveness[i]) if self.liveness is not None else float("nan")
                d["liveness"] = None if np.isnan(live) else round(live, 3)
            items.append(d)
        return items


@dataclass
class FrameResult:
    """What the pipeline produced for one frame of one source."""

    source_id: str
    frame_index: int
    timestamp: float  # capture time, seconds since the epoch
    faces: Faces
    timings_ms: dict[str, float] = field(default_factory=dict)
    width: int = 0
    height: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "frame",
            "source": self.source_id,
            "frame": self.frame_index,
            "time": round(self.timestamp, 3),
            "width": self.width,
            "height": self.height,
            "faces": self.faces.to_json(),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }
