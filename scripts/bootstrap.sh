#!/usr/bin/env bash
# Create (or update) .venv with omgclip and everything it needs. Idempotent and quick on re-runs.
# CPU torch is installed first, pinned, so that no multi-GB CUDA build is pulled in by accident;
# set OMGCLIP_TORCH to choose another torch requirement (e.g. a CUDA build on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${OMGCLIP_VENV:-.venv}
stamp="$VENV/.omgclip-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install "${OMGCLIP_TORCH:-torch==2.13.0}"
pip install -e ".[all]"   # every extra: test, export, web, dask (see pyproject)
# opencv-python and opencv-python-headless install the same cv2 files: a venv made before omgclip
# asked for the GUI build has both, and removing one breaks the other, so keep only the GUI one.
if "$VENV/bin/python" -m pip show -q opencv-python-headless >/dev/null 2>&1; then
  pip uninstall -y opencv-python-headless
  pip install --force-reinstall --no-deps "$("$VENV/bin/python" -c 'from importlib.metadata import version; print("opencv-python==" + version("opencv-python"))')"
fi
"$VENV/bin/python" -c "import omgclip, torch, dlib, cv2, yt_dlp, pytorch_lightning" 
"$VENV/bin/python" -c "from omgclip.faces import dlib_models as m; [m.model_file(f) for f in (m.RESNET_FILE, m.SHAPE5_FILE, m.MMOD_FILE)]"
touch "$stamp"
echo "omgclip installed in $VENV" >&2
