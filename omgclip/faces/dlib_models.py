"""dlib's model files, read from the installed ``face-recognition-models`` package.

The package (by Adam Geitgey; code MIT) ships dlib's models by Davis King (dlib-models),
released as CC0 1.0 / public domain: the face recognition ResNet, the 5-point shape
predictor and the MMOD CNN face detector used here (its 68-point predictor, trained on
iBUG 300-W, whose terms exclude commercial use, is not used). Nothing is downloaded.
"""

from __future__ import annotations

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
