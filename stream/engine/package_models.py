"""Model files that ship inside PyPI packages, found without importing those packages.

Nothing is downloaded at run time: dlib's ResNet and 5-point landmark models come
from ``face_recognition_models`` (whose ``__init__`` pulls in pkg_resources, so
it is located, not imported), and MediaPipe's BlazeFace models from the
``mediapipe==0.10.21`` wheel (the last release that ships them; importing
mediapipe takes a second, so it is located too).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from facestream.errors import FacestreamError

DLIB_RESNET = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_5_POINT = "shape_predictor_5_face_landmarks.dat"


def package_dir(package: str, install: str) -> Path:
    """The folder of an installed package, located without importing it.

    Raises:
        FacestreamError: the package is not installed (``install`` says how to get it).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FacestreamError(f"The package {package} is not installed.", f"Install it: pip install {install}")
    return Path(spec.origin).parent


def face_recognition_models_dir() -> Path:
    """The ``models/`` folder of the installed ``face_recognition_models`` package (dlib's model files)."""
    return package_dir("face_recognition_models", "face_recognition_models") / "models"


def dlib_model_file(name: str) -> Path:
    """One of dlib's model files from ``face_recognition_models``, or a clear error when it is missing."""
    path = face_recognition_models_dir() / name
    if not path.is_file():
        raise FacestreamError(f"dlib's model file is missing: {path}.", "Reinstall face_recognition_models.")
    return path


# mediapipe==0.10.21 ships these BlazeFace models; later releases ship none
BLAZEFACE_FILES = {"short": "face_detection_short_range.tflite", "full": "face_detection_full_range_sparse.tflite"}


def blazeface_file(kind: str) -> Path:
    """MediaPipe's BlazeFace ``.tflite`` (``kind``: short or full range), from the installed wheel."""
    path = package_dir("mediapipe", "mediapipe==0.10.21") / "modules" / "face_detection" / BLAZEFACE_FILES[kind]
    if not path.is_file():
        raise FacestreamError(f"MediaPipe's face detection model is missing: {path}.",
                              "Install mediapipe==0.10.21, the last release that ships its models.")
    return path


def face_mesh_file() -> Path:
    """MediaPipe's face mesh ``.tflite`` (468 landmarks, 192x192 input), from the installed wheel."""
    path = package_dir("mediapipe", "mediapipe==0.10.21") / "modules" / "face_landmark" / "face_landmark.tflite"
    if not path.is_file():
        raise FacestreamError(f"MediaPipe's face mesh model is missing: {path}.",
                              "Install mediapipe==0.10.21, the last release that ships its models.")
    return path
