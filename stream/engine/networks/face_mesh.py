"""MediaPipe's face mesh (468 landmarks in 3D), rebuilt in torch from the ``.tflite`` in the mediapipe wheel.

The same operator-by-operator port as BlazeFace (:class:`TfliteNet`); the mesh
adds per-channel PReLU. Input: a face crop of 192x192, RGB in [0, 1]
(``face_landmark_cpu.pbtxt``). Output per image: 468 x (x, y, z) in crop pixels
(z: depth on the same scale, smaller is nearer the camera) and the face-presence
logit.
"""

from __future__ import annotations

from pathlib import Path

import torch

from facestream.stream.engine.networks.blazeface import TfliteNet
from facestream.stream.engine.networks.tflite_format import read_tflite
from facestream.stream.engine.package_models import face_mesh_file

MESH_POINTS = 468
MESH_INPUT = 192


class FaceMeshNet(TfliteNet):
    """The face mesh graph: (N, 3, 192, 192) in [0, 1] -> ((N, 468, 3) landmarks, (N,) presence logit)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        outs = self.run(x)
        mesh = next(o for o in outs if o.numel() == x.shape[0] * MESH_POINTS * 3)
        flag = next(o for o in outs if o.numel() == x.shape[0])
        return mesh.reshape(x.shape[0], MESH_POINTS, 3), flag.reshape(x.shape[0])


class FlatFaceMesh(torch.nn.Module):
    """One output for export: (N, 468 * 3 + 1), the landmarks then the presence logit."""

    def __init__(self, mesh: FaceMeshNet):
        super().__init__()
        self.mesh = mesh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        points, flag = self.mesh(x)
        return torch.cat([points.flatten(1), flag[:, None]], dim=1)


def load_face_mesh(path: str | Path | None = None) -> FaceMeshNet:
    """The face mesh network from its ``.tflite`` (default: the mediapipe wheel's), in eval mode."""
    return FaceMeshNet(read_tflite(path or face_mesh_file())).eval()
