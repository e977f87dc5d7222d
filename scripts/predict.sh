#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv (first run only), then label every 20-frame
# segment of a video with the bundled default model.
#   scripts/predict.sh VIDEO|URL [more omgclip predict options]
# With no argument it uses a real talking-head clip from ../shared/data when that exists.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
if [ $# -eq 0 ]; then
  demo=../shared/data/unlabeled_faces/videos/pyfeat_WolfgangLanger_Pexels.mp4
  [ -f "$demo" ] || { echo "usage: scripts/predict.sh VIDEO|URL [options]" >&2; exit 2; }
  set -- "$demo"
fi
exec .venv/bin/omgclip predict "$@"
