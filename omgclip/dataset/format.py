"""The on-disk layout of a built dataset: the one contract between ``build`` and ``data``.

::

    DIR/
      index.csv            one row per block (columns: INDEX_COLUMNS)
      report.json          counts per class and split, skips by reason, failures, config
      build_config.json    the resolved BuildConfig
      blocks/<split>/<utterance key>/<block number>.npy
                           uint8 array, shape (T, S, S) = (20, 80, 80), grayscale face
                           crops of T consecutive frames; scale to [0, 1] at load time
      failures.csv         sources that could not be fetched or opened (source, reason)
      skips.csv            utterances / blocks that were skipped (where, reason, ...)
      .state/              per-utterance completion markers (resume bookkeeping)
      videos/              downloaded source videos (unless --video-dir points elsewhere)

Index columns
-------------
block_id      unique string id of the block (``<utterance key>/<block number>``)
split         the manifest's split (train / validation / test / ...), or the one assigned
              by ``--split-by link``
group         the unit an honest split keeps together: the source link for OMG
              manifests, the ``group`` column (person) for the project's own manifests
source        the manifest's link or path
video         the manifest's video id
utterance     the manifest's utterance id
label         0..6 in OMG order, -1 when the manifest has no label (the test split)
label_name    the class name, or "" when unlabeled
start_frame   first frame of the block in the source video (frame index, 0-based)
num_frames    T
fps           the source video's real frame rate (0 for a still-frame source)
detect_frac   fraction of the T frames with a real face detection (the rest carried a
              neighbour's box over a short miss)
path          the .npy file, relative to DIR
"""

from __future__ import annotations

import json
from pathlib import Path

INDEX_FILE = "index.csv"
REPORT_FILE = "report.json"
CONFIG_FILE = "build_config.json"
FAILURES_FILE = "failures.csv"
SKIPS_FILE = "skips.csv"
BLOCKS_DIR = "blocks"
STATE_DIR = ".state"

INDEX_COLUMNS = (
    "block_id", "split", "group", "source", "video", "utterance", "label", "label_name",
    "start_frame", "num_frames", "fps", "detect_frac", "path",
)

BLOCK_DTYPE = "uint8"
DEFAULT_BLOCK_LEN = 20
DEFAULT_CROP_SIZE = 80


def read_face_config(data_dir) -> dict | None:
    """The face settings a dataset was built with (``build_config.json``'s ``face``), or
    None where it is not recorded or not readable."""
    try:
        face = json.loads((Path(data_dir) / CONFIG_FILE).read_text()).get("face")
    except (OSError, ValueError, AttributeError):
        return None
    return face if isinstance(face, dict) else None
