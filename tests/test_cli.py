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


def test_exit_process_runs_exit_handlers_flushes_and_keeps_the_code(tmp_path):
    """The program skips the interpreter's slow teardown, but not what a clean exit does."""
    marker = tmp_path / "atexit-ran"
    code = ("import atexit, sys\n"
            "from omgclip.cli import exit_process\n"
            f"atexit.register(lambda: open({str(marker)!r}, 'w').write('x'))\n"
            "print('buffered out', end='')\n"
            "sys.stderr.write('buffered err')\n"
            "exit_process(7)\n"
            "print('never')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 7
    assert proc.stdout == "buffered out" and proc.stderr == "buffered err"
    assert marker.read_text() == "x"


def test_exit_process_waits_like_a_clean_exit_while_another_thread_works():
    import threading

    from omgclip.cli import exit_process

    release = threading.Event()
    worker = threading.Thread(target=release.wait, daemon=False)
    worker.start()
    try:
        with pytest.raises(SystemExit) as exc:  # sys.exit: the interpreter would join the thread
            exit_process(3)
        assert exc.value.code == 3
    finally:
        release.set()
        worker.join()


def test_program_exit_codes_through_python_m(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "omgclip", "models"], capture_output=True, text=True)
    assert ok.returncode == 0 and "r2plus1d_wide" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "omgclip", "predict", str(tmp_path / "missing.mp4")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("omgclip: error:")
    assert len(bad.stderr.strip().splitlines()) == 1
