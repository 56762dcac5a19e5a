"""common.files.write_atomic: the one way server and router replace the files their readers poll."""

import os
import stat
from pathlib import Path

import pytest

from common.files import write_atomic


def test_writes_the_text_readable_by_everyone(tmp_path):
    target = tmp_path / "state.json"
    write_atomic(target, "first\n")
    write_atomic(target, "second\n")
    assert target.read_text() == "second\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "ready"
    write_atomic(target, "old")

    def no_rename(src, dst):
        assert Path(src).read_text() == "new"  # the new text was complete before the rename
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready"]


def test_text_that_cannot_be_encoded_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "profile.json"
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "\udc80")  # a lone surrogate: fails inside the write, after mkstemp
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_mid_write_also_cleans_up(tmp_path, monkeypatch):
    def interrupted(fd, mode):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fchmod", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "ruleset.nft", "table inet natlab {}\n")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_an_error_not_a_stray_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "absent" / "state.json", "{}")
    assert list(tmp_path.iterdir()) == []
