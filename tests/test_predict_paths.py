"""predict's inputs and output paths: nothing overwritten, nothing lost, checked before the work.

Inputs are small synthetic faceless videos and pictures (fast: no face, no model call), so
these run without ../shared/data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _procs import unprivileged
from omgclip.apps import predict as predict_mod
from omgclip.apps.inputs import unique_tags
from omgclip.apps.predict import PartialPredictError, PredictConfig, predict
from omgclip.cli import main

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # before this file's own cv2 writers


def _video(path: Path, frames: int = 30, shade: int = 90) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    for i in range(frames):
        frame = np.full((120, 160, 3), shade, np.uint8)
        frame[40:80, (2 * i) % 120:(2 * i) % 120 + 40] = (40, 200, 240)
        writer.write(frame)
    writer.release()
    return path


def _picture(path: Path) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((120, 160, 3), 120, np.uint8))
    return path


def _one_line(capfd, argv, needle: str) -> str:
    code = main(argv)
    captured = capfd.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == 2, captured
    assert "Traceback" not in captured.err and len(lines) == 1, captured.err
    assert lines[0].startswith("omgclip: error: ") and needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the model is loaded: path checks must come before the work."""
    def refuse(checkpoint):
        raise AssertionError("the model was loaded before the output paths were checked")

    monkeypatch.setattr(predict_mod, "load_predict_model", refuse)


# ----------------------------------------------------------------------------- inputs kept
@pytest.mark.parametrize("option, name", [("--annotate", "v.mp4"), ("--plot", "img.png"),
                                          ("--annotate", "img.png"), ("--out", "v.mp4")])
def test_an_output_that_is_an_input_is_refused(option, name, tmp_path, capfd, no_model):
    src = _video(tmp_path / "v.mp4") if name.endswith(".mp4") else _picture(tmp_path / name)
    before = src.read_bytes()
    if option == "--out":  # a suffix check answers first; use a hard link named .csv
        os.link(src, tmp_path / "v.csv")
        target = tmp_path / "v.csv"
    else:
        target = src
    _one_line(capfd, ["predict", "--no-progress", option, str(target), str(src)], "is the input")
    assert src.read_bytes() == before


def test_an_output_linked_to_an_input_is_refused(tmp_path, capfd, no_model):
    src = _video(tmp_path / "v.mp4")
    (tmp_path / "link.mp4").symlink_to(src)
    _one_line(capfd, ["predict", "--no-progress", "--annotate", str(tmp_path / "link.mp4"),
                      str(src)], "is the input")
    other = _video(tmp_path / "w.mp4")  # with several inputs: the per-input name of one
    os.link(src, tmp_path / "out_w.mp4")
    _one_line(capfd, ["predict", "--no-progress", "--annotate", str(tmp_path / "out.mp4"),
                      str(src), str(other)], "is the input")


def test_annotation_and_plot_of_one_picture_may_not_share_a_name(tmp_path, capfd, no_model):
    src = _picture(tmp_path / "face.png")
    out = tmp_path / "same.png"
    _one_line(capfd, ["predict", "--no-progress", "--annotate", str(out), "--plot", str(out),
                      str(src)], "--annotate and --plot would both write")


def test_same_named_inputs_in_two_folders_get_their_own_outputs(tmp_path, checkpoint):
    a = _video(tmp_path / "a" / "clip.mp4", frames=25, shade=60)
    b = _video(tmp_path / "b" / "clip.mp4", frames=35, shade=200)
    out = tmp_path / "out"
    rows = predict(PredictConfig(inputs=(str(a), str(b)), checkpoint=checkpoint, progress=False,
                                 annotate=str(out / "labeled.mp4"), plot=str(out / "t.png"),
                                 out=str(out / "rows.csv")))
    assert sorted(p.name for p in out.iterdir()) == [
        "labeled_a_clip.mp4", "labeled_b_clip.mp4", "rows.csv", "t_a_clip.png", "t_b_clip.png"]
    from omgclip.faces.video_io import count_frames

    assert count_frames(out / "labeled_a_clip.mp4") == 25
    assert count_frames(out / "labeled_b_clip.mp4") == 35
    assert set(pd.read_csv(out / "rows.csv")["file"]) == {str(a), str(b)} == set(rows["file"])


def test_unique_tags():
    assert unique_tags(["a/clip.mp4", "b/clip.mp4", "c/x.mp4"]) == {
        "a/clip.mp4": "a_clip", "b/clip.mp4": "b_clip", "c/x.mp4": "x"}
    assert unique_tags(["/p/a/clip.mp4", "/q/a/clip.mp4"]) == {
        "/p/a/clip.mp4": "p_a_clip", "/q/a/clip.mp4": "q_a_clip"}
    tags = unique_tags(["/v/Clip.mp4", "/v/clip.MP4", "https://e.com/v/clip.mp4",
                        "https://www.youtube.com/watch?v=abc"])
    assert len({t.casefold() for t in tags.values()}) == 4
    assert tags["https://www.youtube.com/watch?v=abc"] == "abc"
    assert all(t and all(c.isalnum() or c in "._-" for c in t) for t in tags.values())


# ----------------------------------------------------------------------------- checked first
@pytest.mark.parametrize("option, kind", [
    ("--out", "folder"), ("--out", "under_file"), ("--annotate", "folder"),
    ("--annotate", "under_file"), ("--plot", "folder"), ("--plot", "under_file"),
    ("--cache-dir", "file"), ("--cache-dir", "under_file")])
def test_bad_output_paths_fail_before_the_work(option, kind, tmp_path, capfd, no_model):
    src = _video(tmp_path / "v.mp4")
    (tmp_path / "file.txt").write_text("x")
    suffix = {"--out": ".csv", "--annotate": ".mp4", "--plot": ".png", "--cache-dir": ""}[option]
    if kind == "folder":
        target = tmp_path / f"folder{suffix}"
        target.mkdir()
        needle = "is a folder"
    elif kind == "file":
        target = tmp_path / "file.txt"
        needle = "is a file, not a folder"
    else:
        target = tmp_path / "file.txt" / f"x{suffix}"
        needle = "is a file, not a folder"
    _one_line(capfd, ["predict", "--no-progress", option, str(target), str(src)], needle)


@pytest.mark.parametrize("option", ["--out", "--annotate", "--plot", "--cache-dir"])
def test_unwritable_output_folder_is_one_line(option, tmp_path):
    src = _video(tmp_path / "v.mp4")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    suffix = {"--out": "rows.csv", "--annotate": "a.mp4", "--plot": "t.png", "--cache-dir": "c"}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*unprivileged(), sys.executable, "-m", "omgclip", "predict",
                           "--no-progress", "--checkpoint", str(tmp_path / "absent.pt"), option,
                           str(locked / suffix[option]), str(src)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "permission denied" in lines[0] and option in lines[0], lines[0]  # not the checkpoint


# ----------------------------------------------------------------------------- odd inputs
@pytest.mark.parametrize("item, needle", [
    ("http://[::1", "not a valid URL"), ("http://[x]/a.mp4", "not a valid URL"),
    ("~nosuchuser_omgclip/x.mp4", "names no known user")])
def test_odd_inputs_are_one_line_errors_or_recorded_skips(item, needle, tmp_path, capfd,
                                                          checkpoint):
    _one_line(capfd, ["predict", "--no-progress", item], needle)
    good = _video(tmp_path / "good.mp4")
    with pytest.raises(PartialPredictError, match="1 of 2 inputs failed") as info:
        predict(PredictConfig(inputs=(str(good), item), checkpoint=checkpoint, progress=False))
    assert needle in str(info.value) and set(info.value.rows["file"]) == {str(good)}


def test_checkpoint_of_an_unknown_user_is_one_line(tmp_path, capfd):
    src = _picture(tmp_path / "face.png")
    _one_line(capfd, ["predict", "--no-progress", "--checkpoint", "~nosuchuser_omgclip/m.pt",
                      str(src)], "names no known user")


def test_one_file_named_twice_runs_once(tmp_path, checkpoint, monkeypatch):
    src = _video(tmp_path / "v.mp4")
    monkeypatch.chdir(tmp_path)
    rows = predict(PredictConfig(inputs=("v.mp4", "./v.mp4", str(src)), checkpoint=checkpoint,
                                 progress=False))
    assert set(rows["file"]) == {"v.mp4"}


# ----------------------------------------------------------------------------- truncated
def test_truncated_video_is_labelled_up_to_its_end_and_flagged_partial(tmp_path, checkpoint,
                                                                        capfd, caplog):
    from omgclip.apps.annotate import find_ffmpeg
    from omgclip.faces.video_io import count_frames, probe

    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        pytest.skip("needs ffmpeg to move the index to the front before truncating")
    raw = _video(tmp_path / "raw.mp4", frames=200)
    full = tmp_path / "full.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(raw), "-c", "copy", "-movflags",
                    "+faststart", str(full)], check=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    decoded = count_frames(cut)
    assert 0 < decoded < probe(cut).frame_count
    out = tmp_path / "rows.csv"
    code = main(["predict", "--no-progress", "--checkpoint", checkpoint, "--out", str(out),
                 str(cut)])
    captured = capfd.readouterr()
    assert code == 0 and "Traceback" not in captured.err
    assert "PARTIAL" in captured.out and f"labels end at frame {decoded}" in captured.out
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "could be decoded (truncated?)" in warned[0].getMessage()
    assert pd.read_csv(out)["end_frame"].max() == decoded
    rows = predict(PredictConfig(inputs=(str(cut),), checkpoint=checkpoint, progress=False))
    assert rows.attrs["timings"][0]["partial"] is True
    whole = predict(PredictConfig(inputs=(str(full),), checkpoint=checkpoint, progress=False))
    assert whole.attrs["timings"][0]["partial"] is False


@pytest.mark.parametrize("out, needle", [("~nosuchuser_omgclip/m.onnx", "names no known user"),
                                         ("file.txt/m.onnx", "is a file, not a folder")])
def test_export_checks_its_output_first(out, needle, tmp_path, capfd, monkeypatch):
    from omgclip.learn import checkpoint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("x")

    def refuse(path):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(checkpoint, "load_for_inference", refuse)
    _one_line(capfd, ["export", "--out", out], needle)
