"""The face mesh port (MediaPipe's face_landmark.tflite run in torch) against MediaPipe's own FaceMesh graph."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.stream.engine.face_mesh import FaceMesher, mesh_rois
from facestream.stream.engine.imageio import load_image
from tests.conftest import EXAMPLES

PHOTOS = ["Barack_Obama/obama.jpg", "Alex_Lacamoire/img1.jpg", "Lin_Manuel_Miranda/lin-manuel-miranda.png"]


@pytest.mark.parametrize("name", PHOTOS)
def test_mesh_matches_mediapipe(analyzer, name):
    import mediapipe as mp  # a hard dependency (the pinned wheel ships the model): never skipped
    rgb = load_image(EXAMPLES / name)
    faces = analyzer.detect(rgb, with_landmarks=False)
    i = int(np.argmax(faces.score))
    mesh = FaceMesher()(rgb, faces.xyxy[i:i + 1], faces.kps[i:i + 1])
    assert mesh.points.shape == (1, 468, 3) and mesh.presence[0] > 0.9
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as ref:
        found = ref.process(np.ascontiguousarray(rgb))
    h, w = rgb.shape[:2]
    want = np.array([[p.x * w, p.y * h] for p in found.multi_face_landmarks[0].landmark])
    size = float(faces.xyxy[i, 2] - faces.xyxy[i, 0])
    err = np.linalg.norm(mesh.points[0, :, :2] - want, axis=1) / size
    # the crops differ (MediaPipe's own detector box), the landmarks agree within 1.5% of the face
    assert float(np.median(err)) < 0.015, float(np.median(err))


def test_no_face_no_mesh_and_level_eyes():
    empty = FaceMesher()(np.zeros((64, 64, 3), np.uint8), np.zeros((0, 4), np.float32))
    assert len(empty) == 0 and empty.points.shape == (0, 468, 3)
    # eyes on a 45-degree line: the crop turns by 45 degrees to level them
    kps = np.array([[[10, 10], [20, 20], [0, 0], [0, 0], [0, 0], [0, 0]]], np.float32)
    roi = mesh_rois(np.array([[0, 0, 30, 30]], np.float32), kps)
    assert roi[0, 2] == pytest.approx(45.0) and abs(roi[0, 3]) == pytest.approx(np.pi / 4)
