"""The development tools: README tables match the committed benchmark references, and the
mutation tester finds (and only finds) the spots it should."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def test_readme_tables_are_rendered_from_the_reference_results():
    render = _load(ROOT / "benchmarks" / "render_readme.py")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert render.render(readme) == readme, "README out of date: run python benchmarks/render_readme.py"
    for name in ("bench_build", "bench_predict", "bench_train", "mutation"):
        assert f"<!-- bench:{name} -->" in readme and f"<!-- /bench:{name} -->" in readme


def test_mutants_are_one_spot_changes_and_messages_are_left_alone():
    mutate = _load(ROOT / "scripts" / "mutate.py")
    source = '''
"""Doc 1 < 2."""
import logging
log = logging.getLogger(__name__)


def f(a, b):
    """Doc."""
    log.info("x %d", a + 1)
    if a < b and not b:
        raise ValueError(f"bad {a - 1}")
    return max(a, b) + 2
'''
    mutants, where = mutate.find_mutants(source, None)
    changes = sorted(m.change for m in mutants)
    assert changes == sorted(["Lt -> LtE", "And -> Or", "drop Not", "max() -> min()", "Add -> Sub", "2 -> 3"])
    assert all(m.function == "f" for m in mutants)
    for m, (pos, k) in zip(mutants, where):
        new = ast.unparse(mutate.mutated_source(source, pos, k))
        assert new != ast.unparse(ast.parse(source)), m.change
    only_g, _ = mutate.find_mutants(source, {"g"})
    assert only_g == []


def test_bench_accuracy_without_its_peers_says_how_to_install_them(monkeypatch, capsys):
    bench = _load(ROOT / "benchmarks" / "bench_accuracy.py")

    def missing():
        raise ImportError("No module named 'fer'")

    monkeypatch.setattr(bench, "FerPeer", missing)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--json", "unused.json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "No module named 'fer'" in err and "pip install --no-deps -r benchmarks/requirements-accuracy.txt" in err


def test_face_roll_measures_the_tilt_of_a_real_face(shared_data):
    """benchmarks/face_roll.py's ``eye_roll`` on a real MEAD frame: near level as filmed, and
    the frame rotated by +-15 degrees moves the measured roll by about 15 degrees, each way."""
    import cv2

    from omgclip.faces.dlib_models import dlib_object
    from omgclip.faces.video_io import iter_gray_frames

    sys.path.insert(0, str(ROOT / "benchmarks"))
    roll = _load(ROOT / "benchmarks" / "face_roll.py")
    det, sp = dlib_object("frontal"), dlib_object("shape5")
    video = sorted((shared_data / "mead_clips" / "videos").glob("M030_*.mp4"))[0]
    _, gray = next(iter_gray_frames(video, 640))
    level = roll.eye_roll(gray, det, sp)
    assert level is not None and abs(level) < 6
    h, w = gray.shape
    for angle in (15, -15):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        tilted = roll.eye_roll(cv2.warpAffine(gray, m, (w, h), borderMode=cv2.BORDER_REPLICATE), det, sp)
        assert tilted is not None and abs(abs(tilted - level) - 15) < 4, (angle, level, tilted)
    assert roll.eye_roll(gray[:, :8].copy(), det, sp) is None  # no face


def _blocks_dataset(root: Path, frames, starts):
    """A built-dataset folder whose blocks are 20-frame windows of ``frames`` (uint8
    ``(F, 80, 80)``) at ``starts`` (so overlapping blocks share frames, as a stride-4 build's do)."""
    import numpy as np
    import pandas as pd

    rows = []
    for i, s in enumerate(starts):
        rel = f"blocks/train/u/{i:04d}.npy"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / rel, np.ascontiguousarray(frames[s:s + 20]))
        rows.append({"block_id": f"train/u/{i:04d}", "split": "train", "group": "unl-u", "source": "u.mp4",
                     "video": "", "utterance": "u", "label": -1, "label_name": "", "start_frame": s,
                     "num_frames": 20, "fps": 25.0, "detect_frac": 1.0, "path": rel})
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    return root


def test_peer_targets_runs_fer_on_each_distinct_frame_of_kept_blocks(tmp_path, capsys, fer_faces):
    """scripts/peer_targets.py with the real ``fer`` model on real faces (FER2013 images):
    blocks 8 frames apart are kept, every frame gets fer's probabilities (summing to 1, the
    same for a frame shared by two blocks, the same as fer run on that frame alone), and the
    file is what ``finetune --distill`` loads."""
    pytest.importorskip("fer", reason="the accuracy peers are not installed "
                                      "(pip install --no-deps -r benchmarks/requirements-accuracy.txt)")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    import numpy as np

    frames = fer_faces(36)
    data = _blocks_dataset(tmp_path / "data", frames, [0, 4, 8, 12, 16])
    pt = _load(ROOT / "scripts" / "peer_targets.py")
    assert pt.main(["--data", str(data), "--out", str(tmp_path / "t.npz")]) == 0
    z = np.load(tmp_path / "t.npz")
    assert z["X"].shape == (3, 20, 80, 80) and z["P"].shape == (3, 20, 7)  # starts 0, 8, 16
    np.testing.assert_array_equal(z["X"][1], frames[8:28])
    np.testing.assert_allclose(z["P"].sum(-1), 1.0, atol=1e-3)
    np.testing.assert_array_equal(z["P"][0, 8:], z["P"][1, :12])  # frames 8..19 are in blocks 0 and 1
    bench = _load(ROOT / "benchmarks" / "bench_accuracy.py")
    np.testing.assert_allclose(z["P"][2, 5], bench.FerPeer()(frames[21:22])[0], atol=1e-6)
    assert len(set(z["P"].reshape(-1, 7).argmax(1).tolist())) > 1  # not one class for every face
    from omgclip.learn.transfer import load_distill

    X, P = load_distill(tmp_path / "t.npz")
    assert tuple(X.shape) == (3, 20, 80, 80) and tuple(P.shape) == (3, 20, 7)
    assert "3 blocks, 36 distinct frames" in capsys.readouterr().out


def test_bench_accuracy_gives_each_peer_its_better_framing_and_records_both():
    """A peer's cell is its better framing by the row's first metric, per row; both scores and
    the choice are kept for the JSON (the peers learnt on FER2013's tighter crops)."""
    import numpy as np

    bench = _load(ROOT / "benchmarks" / "bench_accuracy.py")

    class Peer:
        def __init__(self, name):
            self.name = name

    y = np.array([0, 1, 2, 3])
    right, wrong = np.eye(7)[y], np.eye(7)[[1, 1, 1, 1]]
    tight, ours = bench.PEER_FRAMINGS
    proba = {"a": {tight: right, ours: wrong}, "b": {tight: wrong, ours: right}}
    row = {}
    bench.best_peer_framing(row, [Peer("a"), Peer("b")], proba, slice(None),
                            lambda p: [bench.acc(y, p), bench.uar(y, p)])
    assert row["a"] == [1.0, 1.0] and row["b"] == [1.0, 1.0]
    assert row["peer_framings"]["a"]["best"] == tight and row["peer_framings"]["b"]["best"] == ours
    assert row["peer_framings"]["a"]["scores"][ours] == [0.25, 0.25]
    # the mask selects the rows scored: on the first two faces only, "a" is right in both framings
    row2 = {}
    m = np.array([True, True, False, False])
    bench.best_peer_framing(row2, [Peer("a")], proba, m, lambda p: [bench.acc(y[m], p), 0.0])
    assert row2["a"] == [1.0, 0.0]
    assert row2["peer_framings"]["a"]["scores"][ours] == [0.5, 0.0]


def test_bench_accuracy_records_each_clips_call_and_its_blocks():
    """``clip_calls``: one record per clip (an utterance of a dataset), the class its blocks'
    mean probability calls per model and the share of its blocks called right; the calls are
    what ``clip_level`` scores (the same clip UAR)."""
    import numpy as np
    import pandas as pd

    bench = _load(ROOT / "benchmarks" / "bench_accuracy.py")
    f = pd.DataFrame({"root": ["d"] * 5, "utterance": ["u1", "u1", "u1", "u2", "u2"],
                      "label": [3, 3, 3, 0, 0]})
    # u1 (happy): blocks happy, happy, sad -> called happy, 2 of 3 right; u2 (anger): a confident
    # surprise outvotes a faint anger -> called surprise, 1 of 2 right
    pb = np.full((5, 7), 0.01)
    pb[[0, 1], 3] = 0.9
    pb[2, 5] = 0.9
    pb[3, 0], pb[3, 6] = 0.3, 0.2
    pb[4, 6] = 0.9
    calls = bench.clip_calls(f, {"m": pb})
    assert [(c["utterance"], c["label"], c["blocks"]) for c in calls] == [("u1", "happy", 3), ("u2", "anger", 2)]
    assert calls[0]["m"] == {"call": "happy", "blocks_right": 0.667}
    assert calls[1]["m"] == {"call": "surprise", "blocks_right": 0.5}
    yc, pc = bench.clip_level(f, pb)
    assert list(pc.argmax(1)) == [3, 6] and list(yc) == [3, 0]


def test_bench_accuracy_intervals_are_per_model_and_paired_against_each_peer():
    """``add_intervals``: an interval per metric for each column; for omgclip minus a peer the
    point difference and an interval from the same resamples (a peer identical to omgclip
    gives exactly zero, where two independent intervals would not); whole clusters move."""
    import numpy as np

    bench = _load(ROOT / "benchmarks" / "bench_accuracy.py")

    class Peer:
        def __init__(self, name):
            self.name = name

    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 400)
    ours = np.eye(7)[np.where(rng.random(400) < 0.7, y, (y + 1) % 7)]
    worse = np.eye(7)[np.where(rng.random(400) < 0.4, y, (y + 2) % 7)]
    row = {}
    named = {"omgclip": ours, "same": ours.copy(), "worse": worse}
    bench.add_intervals(row, named, [lambda p, i: bench.acc(y[i], p[i]), lambda p, i: bench.uar(y[i], p[i])],
                        np.arange(400), [Peer("same"), Peer("worse"), Peer("absent")])
    assert set(row["intervals"]) == {"omgclip", "same", "worse"}
    for name, (acc_ci, uar_ci) in row["intervals"].items():
        a = bench.acc(y, named[name])
        assert acc_ci[0] < a < acc_ci[1] and acc_ci[1] - acc_ci[0] < 0.15 and uar_ci[0] < uar_ci[1]
    assert row["vs_peers"]["same"] == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    d, lo, hi = row["vs_peers"]["worse"][0]
    assert d == pytest.approx(bench.acc(y, ours) - bench.acc(y, worse), abs=1e-4) and 0 < lo < d < hi
    assert "absent" not in row["vs_peers"]
    # clustered: 8 clips of 50 blocks, each clip all right or all wrong (6 of 8 right): the
    # interval is that of 8 calls, several times wider than for 400 independent blocks
    good = np.repeat(np.array([1, 1, 1, 0, 1, 1, 0, 1], bool), 50)
    calls = np.eye(7)[np.where(good, y, (y + 1) % 7)]
    score = [lambda p, i: bench.acc(y[i], p[i])]
    by_clip, by_block = {}, {}
    bench.add_intervals(by_clip, {"omgclip": calls}, score, np.repeat(np.arange(8), 50), [])
    bench.add_intervals(by_block, {"omgclip": calls}, score, np.arange(400), [])
    (lo_c, hi_c), = by_clip["intervals"]["omgclip"]
    (lo_b, hi_b), = by_block["intervals"]["omgclip"]
    assert lo_c < lo_b < 0.75 < hi_b < hi_c and (hi_c - lo_c) > 3 * (hi_b - lo_b)


def test_block_and_clip_intervals_resample_the_same_clips():
    """``add_block_clip_intervals`` (bench_accuracy's MEAD rows, select_stage2's validation):
    block UAR resampled by whole clips and clip UAR resampled by clip, one interval each, and
    the paired difference; equal to ``bootstrap_interval`` called directly on those clusters."""
    import numpy as np
    import pandas as pd

    from omgclip.learn.metrics import bootstrap_interval

    bench = _load(ROOT / "benchmarks" / "bench_accuracy.py")
    rng = np.random.default_rng(2)
    utts = [f"u{k}" for k in range(9)]
    labels = [k % 7 for k in range(9)]
    sizes = rng.integers(5, 30, 9)
    frame = pd.DataFrame({"root": "r", "utterance": np.repeat(utts, sizes), "label": np.repeat(labels, sizes)})
    y = frame["label"].to_numpy()
    a = np.eye(7)[np.where(rng.random(len(y)) < 0.7, y, (y + 1) % 7)]
    b = np.eye(7)[np.where(rng.random(len(y)) < 0.5, y, (y + 3) % 7)]
    row = {}
    bench.add_block_clip_intervals(row, frame, {"A": a, "B": b}, ["B"], reference="A")
    keys = (frame["root"] + "|" + frame["utterance"]).to_numpy()
    want_block = bootstrap_interval(lambda i: bench.uar(y[i], a[i]), keys, resamples=bench.RESAMPLES, seed=0)
    yc, pc = bench.clip_level(frame, a)
    want_clip = bootstrap_interval(lambda i: bench.uar(yc[i], pc[i]), np.arange(9), resamples=bench.RESAMPLES, seed=0)
    assert row["intervals"]["A"] == [[round(v, 4) for v in want_block], [round(v, 4) for v in want_clip]]
    (db, lob, hib), (dc, loc, hic) = row["vs_peers"]["B"]
    assert db == round(bench.uar(y, a) - bench.uar(y, b), 4) and lob <= db <= hib and loc <= dc <= hic
    assert set(row["intervals"]) == {"A", "B"}
