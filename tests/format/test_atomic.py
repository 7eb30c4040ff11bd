"""atomic.atomic_file: the one routine every writer (packages, cache entries, repro
storages, reports, bundles) goes through."""

from __future__ import annotations

import os
import stat

import pytest

from aotpack.atomic import atomic_file


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(path) as f:
        f.write(b"half of the new")
        raise RuntimeError("killed")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]
    with atomic_file(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["f"]


def test_exclusive_keeps_the_first_writer_s_file(tmp_path):
    path = tmp_path / "entry"
    with atomic_file(path, exclusive=True) as f:
        f.write(b"first")
    with pytest.raises(FileExistsError), atomic_file(path, exclusive=True) as f:
        f.write(b"second")
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["entry"]


def test_mode_and_symlinks(tmp_path):
    target = tmp_path / "real"
    target.write_bytes(b"x")
    link = tmp_path / "link"
    link.symlink_to(target)
    with atomic_file(link, 0o640) as f:
        f.write(b"y")
    assert link.is_symlink() and target.read_bytes() == b"y"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    old = os.umask(0o027)
    try:
        with atomic_file(tmp_path / "new") as f:
            f.write(b"z")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o640  # as open() would under that umask
