"""A file written through `write_atomic` is the old one or all of the new one, never a part."""

from __future__ import annotations

import pytest

from sites.files import write_atomic


def test_a_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    assert write_atomic(path, b"new content") == path
    assert path.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    path.write_bytes(b"old")

    def disk_full(self, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(path), "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, b"new content")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
