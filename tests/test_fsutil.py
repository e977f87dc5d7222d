"""Atomic writes: a file is either absent, the old one, or complete."""

import os

import pytest

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
