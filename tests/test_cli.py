"""The package imports instantly, and the command line gives one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from omgclip.cli import main


def test_import_is_light_and_side_effect_free():
    code = ("import sys, omgclip, omgclip.cli, omgclip.dataset.manifest, omgclip.dataset.segment, omgclip.labels; "
            "heavy = {'torch', 'dlib', 'cv2', 'pytorch_lightning', 'yt_dlp', 'pandas'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for command in ("build-dataset", "train", "evaluate", "predict", "export", "models"):
        assert command in text


@pytest.mark.parametrize("argv, needle", [
    (["build-dataset", "--manifest", "/nonexistent/m.csv", "--out", "{tmp}/ds"], "/nonexistent/m.csv"),
    (["build-dataset", "--manifest", "omg:nope", "--out", "{tmp}/ds"], "omg:nope"),
    (["build-dataset", "--manifest", "x.csv", "--out", "{tmp}/ds", "--rare-stride", "fear"], "CLASS=STRIDE"),
    (["train", "--data", "{tmp}/missing", "--out", "{tmp}/run"], "missing"),
    (["predict", "{tmp}/missing.mp4"], "missing.mp4"),
])
def test_expected_mistakes_are_one_line_errors(argv, needle, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("omgclip: error:") and needle in err
    assert "\n" not in err and "Traceback" not in err


def test_models_command_lists_the_registry(capsys):
    assert main(["models"]) == 0
    names = capsys.readouterr().out.split()
    assert "c3d" in names and "convlstm" in names and "(default)" in names
