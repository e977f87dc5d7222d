"""dlib's model files, read from the installed ``face-recognition-models`` package.

The package (by Adam Geitgey; code MIT) ships dlib's models by Davis King (dlib-models),
released as CC0 1.0 / public domain: the face recognition ResNet, the 5-point shape
predictor and the MMOD CNN face detector used here (its 68-point predictor, trained on
iBUG 300-W, whose terms exclude commercial use, is not used). Nothing is downloaded.
"""

from __future__ import annotations

import threading
from pathlib import Path

from omgclip.errors import OmgclipError

MODELS_PACKAGE = "face_recognition_models"
RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE5_FILE = "shape_predictor_5_face_landmarks.dat"
MMOD_FILE = "mmod_human_face_detector.dat"


def model_file(name: str) -> Path:
    """Path of one of dlib's model files inside the installed package.

    The package is located with ``importlib`` without importing it: its ``__init__``
    imports ``pkg_resources``, which recent setuptools no longer provides.
    """
    import importlib.util

    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise OmgclipError("dlib's face models are not installed: pip install face-recognition-models "
                           "(or run scripts/bootstrap.sh)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise OmgclipError(f"{path}: missing from the face-recognition-models package (reinstall it)")
    return path


#: per-thread dlib objects: making one costs 0.1-0.4 s (the HOG detector 0.25 s, ~17% of
#: predicting a 20-s clip), and dlib's detectors and networks are not safe to share between
#: threads (serve and live run predictions on worker threads)
_loaded = threading.local()


def dlib_object(kind: str):
    """A dlib model object, made once per thread and reused: ``'frontal'`` (the HOG face
    detector), ``'mmod'`` (the CNN face detector), ``'shape5'`` (the 5-point shape
    predictor) or ``'resnet'`` (the face recognition network)."""
    cache = _loaded.__dict__
    if kind not in cache:
        import dlib

        makers = {
            "frontal": dlib.get_frontal_face_detector,
            "mmod": lambda: dlib.cnn_face_detection_model_v1(str(model_file(MMOD_FILE))),
            "shape5": lambda: dlib.shape_predictor(str(model_file(SHAPE5_FILE))),
            "resnet": lambda: dlib.face_recognition_model_v1(str(model_file(RESNET_FILE))),
        }
        if kind not in makers:
            raise ValueError(f"unknown dlib object {kind!r}; one of {', '.join(makers)}")
        cache[kind] = makers[kind]()
    return cache[kind]
