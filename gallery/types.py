"""Plain records the stores and the matcher hand out.

A :class:`Person` never carries vectors (listing 1M people must stay cheap);
vectors travel as :class:`NewEmbedding` on the way in and as one matrix on the
way out (:meth:`facestream.gallery.store.GalleryStore.load_matrix`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def content_hash(data: bytes) -> str:
    """The key of an embedding: the same photo (or chip) enrolled twice is one embedding, not two."""
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass
class Person:
    """Someone enrolled: stable id, display name, free metadata (student number, class, ...)."""

    id: str
    name: str
    metadata: dict[str, Any] = field(default_factory=dict)
    n_embeddings: int = 0
    created: float = 0.0
    updated: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "metadata": self.metadata, "embeddings": self.n_embeddings,
            "created": self.created, "updated": self.updated,
        }


@dataclass
class NewEmbedding:
    """One embedding to store: the vector, the model that made it, the content hash that keys it.

    Attributes:
        vector: (D,) float32, L2-normalised by the caller's model.
        model_id: the embedding model's id; vectors of different models are never compared.
        hash: content hash of the source photo (or chip) -- makes re-enrolment idempotent.
        chip: the aligned face chip as JPEG bytes, kept so a new model can re-embed it.
        source: where it came from (path, URL, "camera:cam0"), for people show.
        negative: a face marked "not this person": kept apart, it vetoes the person instead of naming them.
    """

    vector: np.ndarray
    model_id: str
    hash: str
    chip: bytes | None = None
    source: str = ""
    created: float = 0.0
    negative: bool = False


@dataclass
class EmbeddingInfo:
    """What ``people show`` lists for one stored embedding (no vector)."""

    hash: str
    model_id: str
    source: str
    created: float
    has_chip: bool

    def to_json(self) -> dict[str, Any]:
        return {"hash": self.hash, "model_id": self.model_id, "source": self.source,
                "created": self.created, "has_chip": self.has_chip}


@dataclass
class Match:
    """One candidate person for a face: rank 1 is the closest."""

    person_id: str
    name: str
    similarity: float
    rank: int

    def to_json(self) -> dict[str, Any]:
        return {"person_id": self.person_id, "name": self.name, "similarity": round(self.similarity, 4),
                "rank": self.rank}


@dataclass
class MatchResult:
    """The answer for one query embedding.

    Attributes:
        best: the identified person, or None for ``unknown`` (below threshold or too close a second).
        candidates: the closest ``top_k`` people, best first, whatever their score.
        margin: best similarity minus the second person's (inf when only one person is enrolled).
        far: the estimated chance that a stranger scores as high as the closest person against this
            gallery (how sure the name is; nan when the matcher decides by a fixed threshold).
        threshold: the similarity the closest person needed to be named.
        vetoed: ids of people the face looked more like the negatives of than like them.
        in_scope: False when the named person is outside the searched roster (named by the whole gallery's
            rule; :mod:`facestream.gallery.scope`).
    """

    best: Match | None
    candidates: list[Match]
    margin: float
    far: float = float("nan")
    threshold: float = float("nan")
    vetoed: list[str] = field(default_factory=list)
    in_scope: bool = True

    @property
    def similarity(self) -> float:
        """Similarity of the closest person (nan when the gallery is empty)."""
        return self.candidates[0].similarity if self.candidates else float("nan")
