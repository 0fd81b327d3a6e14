"""Face mesh: 468 landmarks in 3D per face, from MediaPipe's face mesh model run on a crop around each face.

The crop follows MediaPipe's ``FaceDetectionFrontDetectionToRoi``: a square
1.5 times the detector's box, centred on it, turned so that the eyes (detector
keypoints 0 and 1) lie level. The model sees that crop at 192x192 and its
landmarks are mapped back to image pixels. Used by liveness
(:mod:`facestream.stream.engine.liveness`), where the mesh's motion over a track
tells a head from a picture; MediaPipe's own ``FaceMesh`` graph is the reference
the port is tested against (on ONNX Runtime, as it runs on a CPU).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from facestream.stream.engine.networks.face_mesh import MESH_INPUT, MESH_POINTS

ROI_SCALE = 1.5  # FaceDetectionFrontDetectionToRoi: scale_x = scale_y = 1.5, square_long
PRESENT = 0.5  # MediaPipe's face-presence threshold on the sigmoid of the flag


@dataclass
class Mesh:
    """Meshes of n faces: ``points`` (n, 468, 3) in image pixels (z on the x scale), ``presence`` (n,) 0-1."""

    points: np.ndarray
    presence: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


def mesh_rois(xyxy: np.ndarray, kps: np.ndarray | None) -> np.ndarray:
    """(n, 4) crops: centre x, centre y, side, angle (radians; the eyes level after turning by it)."""
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2
    cy = (xyxy[:, 1] + xyxy[:, 3]) / 2
    side = np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]) * ROI_SCALE
    angle = np.zeros(len(xyxy), np.float32)
    if kps is not None and len(kps) and kps.shape[1] >= 2:
        d = kps[:, 1] - kps[:, 0]
        angle = -np.arctan2(-d[:, 1], d[:, 0]).astype(np.float32)
    return np.stack([cx, cy, side, angle], axis=1)


def _crop_to_image(roi: np.ndarray) -> np.ndarray:
    """The 2x3 affine map from crop pixels (0..192) to image pixels for one ROI."""
    cx, cy, side, angle = (float(v) for v in roi)
    k = side / MESH_INPUT
    c, s = math.cos(angle), math.sin(angle)
    # image = centre + R(angle) @ (crop - 96) * k
    a = np.array([[c * k, -s * k], [s * k, c * k]])
    t = np.array([cx, cy]) - a @ np.array([MESH_INPUT / 2, MESH_INPUT / 2])
    return np.hstack([a, t[:, None]])


class FaceMesher:
    """Runs the face mesh on faces of an RGB image, all faces in one batch.

    On a CUDA machine the torch port runs on the GPU; elsewhere the prepared ONNX model
    (``facestream models prepare`` makes it from the mediapipe wheel, once) runs on ONNX Runtime, 2-3x
    faster than the torch port on a CPU. Thread-safe: calls are serialised by a lock (batches save time).
    """

    def __init__(self, device: str | None = None):
        self._device = device
        self._run = None
        self._lock = threading.Lock()

    def _runner(self):
        if self._run is None:
            import torch

            device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
            if device == "cpu":
                import onnxruntime as ort

                from facestream.stream.engine.model_store import prepare_model

                session = ort.InferenceSession(str(prepare_model("face-mesh").onnx_path),
                                               providers=["CPUExecutionProvider"])
                name = session.get_inputs()[0].name

                def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                    rows = session.run(None, {name: x})[0]
                    return rows[:, :-1].reshape(len(x), MESH_POINTS, 3), rows[:, -1]
            else:
                from facestream.stream.engine.networks.face_mesh import load_face_mesh

                net = load_face_mesh().to(device)

                def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                    with torch.inference_mode():
                        pts, flag = net(torch.from_numpy(x).to(device))
                    return pts.cpu().numpy(), flag.cpu().numpy()
            self._run = run
        return self._run

    def __call__(self, rgb: np.ndarray, xyxy: np.ndarray, kps: np.ndarray | None = None) -> Mesh:
        """Meshes for the faces at ``xyxy`` (with detector keypoints ``kps`` to level the eyes, when known)."""
        rois = mesh_rois(xyxy, kps)
        if not len(rois):
            return Mesh(np.zeros((0, MESH_POINTS, 3), np.float32), np.zeros(0, np.float32))
        maps = [_crop_to_image(r) for r in rois]
        crops = np.stack([
            cv2.warpAffine(rgb, m, (MESH_INPUT, MESH_INPUT), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
            for m in maps])
        x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
        with self._lock:
            pts, logit = self._runner()(x)
        presence = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
        out = np.empty_like(pts)
        for i, m in enumerate(maps):
            out[i, :, :2] = pts[i, :, :2] @ m[:, :2].T + m[:, 2]
            out[i, :, 2] = pts[i, :, 2] * (rois[i, 2] / MESH_INPUT)
        return Mesh(out.astype(np.float32), presence.astype(np.float32))


_SHARED: FaceMesher | None = None
_SHARED_LOCK = threading.Lock()


def shared_mesher() -> FaceMesher:
    """One face mesh for the whole process (every source's liveness batches go through it)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = FaceMesher()
        return _SHARED
