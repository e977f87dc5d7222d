#!/usr/bin/env python3
"""FER2013 photos through the whole ``omgclip predict`` path: what a user gets on photos.

``bench_accuracy.py``'s FER2013 row feeds the model the dataset's own face crops (reframed to
omgclip's framing). This benchmark instead runs each image file the way ``omgclip predict
photo.png`` does, four ways in the same run:

* ``predict`` as shipped: decode, dlib face detection, omgclip's crop (box plus margin, 80x80
  gray) and the still-image net (with the test-time flip where the weights ask for it on
  stills, ``still_flip``); ``--no-flip``: one plain pass on the same detections;
* ``predict --crop none`` (the inputs are face crops already, as FER2013's are): the whole
  image resized to 80x80, no detection; with and without the flip.

An image where no face is found counts as wrong in ``accuracy (all images)``; ``accuracy
(faces found)`` leaves those out. No peer is run here: each peer has its own face detector
(``bench_accuracy.py`` compares them on the same crops).

    python benchmarks/bench_photos.py [--split PrivateTest] [--limit N] [--checkpoint W.pt]

Prints one table and writes ``benchmarks/results/bench_photos.json`` (``--reference``: also
``benchmarks/reference/bench_photos.json``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import SHARED, Run, write  # noqa: E402

SPLITS = ("PublicTest", "PrivateTest")


def fer_images(root: Path, split: str, limit: int | None) -> tuple[list[Path], np.ndarray]:
    """The ``split``'s image files and OMG labels from ``labels.csv``; with ``limit``, every
    k-th image so that all classes keep their shares."""
    import pandas as pd

    table = pd.read_csv(root / "labels.csv")
    table = table[table["usage"] == split].sort_values("file")
    if limit and limit < len(table):
        table = table.iloc[np.linspace(0, len(table) - 1, limit).round().astype(int)]
    return [root / f for f in table["file"]], table["omg_label"].to_numpy(int)


def scores(y: np.ndarray, pred: np.ndarray, k: int = 7) -> dict:
    """Accuracy and UAR, where ``pred`` -1 (no face) is wrong; also on the found faces alone."""
    found = pred >= 0
    rec = [float((pred[y == c] == c).mean()) for c in range(k) if (y == c).any()]
    return {"accuracy": float((pred == y).mean()), "uar": float(np.mean(rec)),
            "accuracy_found": float((pred[found] == y[found]).mean()) if found.any() else float("nan")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fer", default=str(SHARED / "fer2013"))
    p.add_argument("--split", choices=SPLITS, default="PrivateTest")
    p.add_argument("--limit", type=int, default=None, help="score N images spread over the split")
    p.add_argument("--checkpoint", default=None, help="weights (default: the bundled model)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--reference", action="store_true")
    args = p.parse_args(argv)
    root = Path(args.fer)
    if not (root / "labels.csv").is_file():
        p.error(f"{root}: no FER2013 labels.csv (see ../shared/data/fer2013/README.md)")
    import torch

    from omgclip.apps.predict import PredictConfig, face_config_for, predict_video
    from omgclip.faces.detect import FaceDetector
    from omgclip.learn.checkpoint import load_for_inference

    torch.set_num_threads(args.threads)
    files, y = fer_images(root, args.split, args.limit)
    run = Run("bench_photos")
    shipped, no_flip = load_for_inference(args.checkpoint), load_for_inference(args.checkpoint, flip=False)
    variants = {"predict (as shipped)": ("detect", shipped), "predict --no-flip": ("detect", no_flip),
                "predict --crop none": ("none", shipped), "predict --crop none --no-flip": ("none", no_flip)}
    cfgs = {crop: PredictConfig(inputs=("-",), checkpoint=args.checkpoint, progress=False, persons=False, crop=crop)
            for crop in ("detect", "none")}
    face = face_config_for(shipped, cfgs["detect"])
    detector = FaceDetector(face)
    preds = {name: np.full(len(files), -1) for name in variants}
    t0 = time.perf_counter()
    for i, path in enumerate(files):
        for name, (crop, model) in variants.items():
            result = predict_video(path, model, cfgs[crop], face=face, detector=detector)
            found = [f for f in result.faces if f.probs is not None]
            if found:  # one face per FER2013 image; several: the largest box
                best = max(found, key=lambda f: f.boxes[0].width * f.boxes[0].height)
                preds[name][i] = int(np.argmax(best.probs))
        if (i + 1) % 500 == 0:
            print(f"[{time.perf_counter() - t0:.0f}s] {i + 1}/{len(files)} images", flush=True)
    seconds = time.perf_counter() - t0
    results = {name: scores(y, pr) for name, pr in preds.items()}
    found = float((preds["predict (as shipped)"] >= 0).mean())
    print(f"\nFER2013 {args.split}, {len(files)} image files through omgclip predict "
          f"(dlib found a face in {found:.1%}; {seconds:.0f} s)\n")
    print("| model | accuracy (all images) | UAR (all images) | accuracy (faces found) |")
    print("|---|---|---|---|")
    for name, s in results.items():
        print(f"| {name} | {s['accuracy']:.3f} | {s['uar']:.3f} | {s['accuracy_found']:.3f} |")
    record = run.record({"models": results, "faces_found": found, "images": len(files), "seconds": seconds,
                         "still_flip": bool(shipped.meta.get("still_flip")), "still_len": shipped.still_len},
                        [], split=args.split, limit=args.limit, checkpoint=args.checkpoint or "bundled",
                        threads=args.threads)
    write(record, args.json, args.reference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
