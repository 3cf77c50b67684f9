"""The one atomic write: whole or not at all, synced, with open()'s file mode, and a bundle
swap that never leaves its path empty."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from anomaly import _fs


@pytest.fixture
def umask_022() -> object:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_write_gives_the_mode_open_would(tmp_path: Path, umask_022: object) -> None:
    target = _fs.atomic_write(tmp_path / "out.bin", b"data")
    assert target.read_bytes() == b"data"
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_file_and_folder_are_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    _fs.atomic_write(tmp_path / "out.bin", b"data")
    assert len(synced) == 2  # the file's content, then the folder's new entry


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "scores.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), _fs.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


def test_atomic_file_abort_and_commit(tmp_path: Path) -> None:
    with _fs.AtomicFile(tmp_path / "a.csv") as tmp:
        tmp.path.write_text("x")
        assert _fs.temporaries(tmp_path / "a.csv") == [tmp.path]
        tmp.abort()
    assert list(tmp_path.iterdir()) == []
    tmp = _fs.AtomicFile(tmp_path / "a.csv")
    tmp.path.write_text("y")
    assert tmp.commit().read_text() == "y"


def _swap_while_reading(target: Path, swaps: int) -> list[str]:
    """Build the folder, then replace it ``swaps`` times while another thread keeps reading
    it; returns what the reader saw."""
    with _fs.atomic_dir(target) as tmp:
        (tmp / "bundle.json").write_text("first")
    seen: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                seen.append((target / "bundle.json").read_text())
            except FileNotFoundError:
                seen.append("MISSING")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(swaps):
            with _fs.atomic_dir(target) as tmp:
                (tmp / "model.onnx").write_bytes(b"m" * 1000)
                (tmp / "bundle.json").write_text(f"v{i}")
    finally:
        done.set()
        thread.join()
    return seen


def test_a_bundle_swap_never_leaves_the_path_empty(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    seen = _swap_while_reading(target, 40)
    assert (target / "bundle.json").read_text() == "v39"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # the old one is gone
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    if not _fs.exchange(tmp_path / "a", tmp_path / "b"):  # pragma: no cover
        pytest.skip("this kernel or filesystem has no atomic exchange")
    assert len(seen) > 40 and "MISSING" not in seen, "a reader found no bundle in a swap"


def test_without_exchange_the_swap_still_replaces(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fs, "exchange", lambda a, b: False)
    target = tmp_path / "bundle"
    _swap_while_reading(target, 3)
    assert (target / "bundle.json").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_a_failed_bundle_build_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    with _fs.atomic_dir(target) as tmp:
        (tmp / "bundle.json").write_text("good")
    with pytest.raises(ValueError), _fs.atomic_dir(target) as tmp:
        (tmp / "bundle.json").write_text("half")
        raise ValueError("export failed")
    assert (target / "bundle.json").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
