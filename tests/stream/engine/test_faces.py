"""Faces: parallel arrays that follow every selection and merge together."""

from __future__ import annotations

import json

import numpy as np

from facestream.stream.engine.faces import Faces, FrameResult


def _faces(n: int, offset: float = 0.0) -> Faces:
    xyxy = np.array([[i * 10 + offset, 0, i * 10 + 8 + offset, 9] for i in range(n)], np.float32)
    return Faces(xyxy=xyxy, score=np.linspace(0.5, 0.9, n), landmarks=np.zeros((n, 5, 2), np.float32),
                 name=[f"p{i}" for i in range(n)], identity=[str(i) for i in range(n)],
                 similarity=np.full(n, 0.9, np.float32))


def test_mask_indexing_keeps_fields_aligned():
    f = _faces(4)
    sub = f[f.score > 0.7]
    assert len(sub) == 2
    assert sub.name == ["p2", "p3"] and sub.identity == ["2", "3"]
    assert np.allclose(sub.xyxy[:, 0], [20, 30])
    assert sub.landmarks.shape == (2, 5, 2) and list(sub.track_id) == [-1, -1]
    assert f[1].name == ["p1"]


def test_merge_and_empty():
    merged = Faces.merge([_faces(2), Faces.empty(), _faces(3, offset=100)])
    assert len(merged) == 5 and merged.name[2] == "p0"
    partial = Faces.merge([_faces(1), Faces(xyxy=[[0, 0, 1, 1]], score=[1.0])])
    assert partial.name is None and len(partial) == 2  # a field missing in one part is dropped
    assert Faces.empty().is_empty() and len(Faces.merge([])) == 0


def test_frame_result_json_round_trips():
    f = _faces(2)
    f.similarity[1] = np.nan
    msg = FrameResult("cam0", 7, 1700000000.123, f, {"detect": 3.21}, 640, 360).to_json()
    text = json.dumps(msg)
    back = json.loads(text)
    assert back["source"] == "cam0" and back["frame"] == 7
    assert back["faces"][0]["name"] == "p0" and back["faces"][1]["similarity"] is None
    assert back["faces"][0]["box"] == [0.0, 0.0, 8.0, 9.0]
