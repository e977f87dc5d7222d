"""Atomic writes: a file is either absent, the old one, or complete."""

import os

import pytest

from _procs import wait_for
from omgclip.fsutil import atomic_write, atomic_write_text


def test_atomic_writes_leave_complete_files_with_normal_permissions(tmp_path):
    target = atomic_write_text(tmp_path / "a.txt", "hello")
    assert target.read_text() == "hello" and os.stat(target).st_mode & 0o777 == 0o644 & ~_umask()

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "hello" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------- temp files
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from omgclip.errors import OmgclipError  # noqa: E402
from omgclip.fsutil import (  # noqa: E402
    check_output_dir, check_output_file, expand_path, same_file, sweep_stale_temps, temp_path)

ROOT = Path(__file__).resolve().parents[1]

_SLOW_WRITER = """
import sys, time
from omgclip.fsutil import atomic_write, sigterm_raises
def slow(tmp):
    tmp.write_text("half")
    time.sleep(60)
with sigterm_raises():
    atomic_write(sys.argv[1], slow)
"""


def _child(code: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _hidden(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith("."))


def test_temp_files_sit_beside_their_target_with_a_tag(tmp_path):
    tmp = temp_path(tmp_path / "rows.csv", suffix=".mp4")
    assert tmp.parent == tmp_path and tmp.name.startswith(".rows.csv.omgclip-")
    assert tmp.suffix == ".mp4" and f"-{os.getpid()}-" in tmp.name


def test_sigterm_removes_the_temporary_file(tmp_path):
    target = tmp_path / "out.txt"
    proc = _child(_SLOW_WRITER, str(target))
    wait_for(lambda: _hidden(tmp_path))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert "Terminated" in err and proc.returncode != 0
    assert list(tmp_path.iterdir()) == []


def test_kill_9_leftovers_are_swept_by_the_next_write_but_live_ones_are_kept(tmp_path):
    dead = _child(_SLOW_WRITER, str(tmp_path / "a.txt"))
    left = wait_for(lambda: _hidden(tmp_path))
    dead.kill()
    dead.communicate(timeout=60)
    assert _hidden(tmp_path) == left  # kill -9: nothing could clean up
    alive = _child(_SLOW_WRITER, str(tmp_path / "b.txt"))
    try:
        live = wait_for(lambda: [p for p in _hidden(tmp_path) if p.name.startswith(".b.txt")])
        (tmp_path / ".notes.tmp").write_text("not ours")
        atomic_write_text(tmp_path / "c.txt", "next run")
        names = {p.name for p in tmp_path.iterdir()}
        assert left[0].name not in names  # the dead run's file is gone
        assert live[0].name in names and ".notes.tmp" in names and "c.txt" in names
        assert sweep_stale_temps(tmp_path) == []  # once per folder per process
    finally:
        alive.kill()
        alive.communicate(timeout=60)
    assert sweep_stale_temps(tmp_path, force=True) == live


# ----------------------------------------------------------------------------- output checks
def test_output_paths_are_checked_before_the_work(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OmgclipError, match="is a folder"):
        check_output_file(tmp_path / "folder", "--out")
    with pytest.raises(OmgclipError, match="is a file, not a folder"):
        check_output_file(tmp_path / "file.txt" / "sub" / "rows.csv", "--out")
    with pytest.raises(OmgclipError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "file.txt", "--cache-dir")
    with pytest.raises(OmgclipError, match="not a regular file"):
        check_output_file("/dev/null", "--out")
    assert check_output_file(tmp_path / "new" / "deeper" / "rows.csv", "--out").name == "rows.csv"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert check_output_dir(tmp_path / "folder", "--cache-dir") == tmp_path / "folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder"]


def test_unknown_user_in_a_path_is_one_line(tmp_path):
    with pytest.raises(OmgclipError, match="names no known user"):
        expand_path("~nosuchuser_omgclip/x.mp4", "input")
    with pytest.raises(OmgclipError, match="names no known user"):
        check_output_file("~nosuchuser_omgclip/rows.csv", "--out")
    assert expand_path("~/x.mp4") == Path.home() / "x.mp4"


def test_same_file_sees_links_and_dots(tmp_path):
    a = tmp_path / "a.mp4"
    a.write_bytes(b"x")
    (tmp_path / "link.mp4").symlink_to(a)
    os.link(a, tmp_path / "hard.mp4")
    assert same_file(a, tmp_path / "link.mp4") and same_file(a, tmp_path / "hard.mp4")
    assert same_file(a, tmp_path / "sub" / ".." / "a.mp4")
    assert not same_file(a, tmp_path / "b.mp4")


def test_an_interrupt_before_the_callers_try_still_removes_the_temp(tmp_path):
    from omgclip.fsutil import sigterm_raises

    with pytest.raises(KeyboardInterrupt):
        with sigterm_raises():
            temp_path(tmp_path / "a.mp4", suffix=".mp4")
            raise KeyboardInterrupt  # as if Ctrl-C came between mkstemp and the try
    assert list(tmp_path.iterdir()) == []
