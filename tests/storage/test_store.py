"""The local result store writes atomically: a reader sees the old file or the whole new one."""

from __future__ import annotations

import pytest

from services.storage.store import LocalDirectoryStore


def test_a_streamed_write_appears_only_once_it_succeeds(tmp_path):
    store = LocalDirectoryStore(tmp_path)
    with store.writer("alice/job-1/result.json") as handle:
        handle.write(b'{"cells":[')
        assert not store.exists("alice/job-1/result.json")
        handle.write(b"]}")
    assert store.read("alice/job-1/result.json") == b'{"cells":[]}'


def test_a_failed_streamed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    store = LocalDirectoryStore(tmp_path)
    store.put("alice/job-1/result.json", b"old")
    with pytest.raises(RuntimeError), store.writer("alice/job-1/result.json") as handle:
        handle.write(b"half of the new")
        raise RuntimeError("the writer died")
    assert store.read("alice/job-1/result.json") == b"old"
    assert [p.name for p in (tmp_path / "alice" / "job-1").iterdir()] == ["result.json"]


@pytest.mark.parametrize("key", ["../outside", "alice/../../outside", "/etc/passwd", "alice/job/../../../x", ".."])
def test_a_key_cannot_escape_the_store(tmp_path, key):
    store = LocalDirectoryStore(tmp_path / "results")
    with pytest.raises(ValueError, match="escapes"), store.writer(key):
        pass
    with pytest.raises(ValueError, match="escapes"):
        store.read(key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # nothing written outside


def test_a_jobs_first_file_makes_its_directories_and_dot_segments_inside_stay_inside(tmp_path):
    store = LocalDirectoryStore(tmp_path)
    store.put("bob/job-2/deep/mask.png", b"png")
    store.put("bob/job-2/deep/../mask.png", b"png too")  # still inside the store: allowed
    assert store.read("bob/job-2/deep/mask.png") == b"png"
    assert (tmp_path / "bob" / "job-2" / "mask.png").read_bytes() == b"png too"
