"""The repository in-process: layout discovery, and that an unloaded version is really freed
even though the service freezes its start-up heap out of the garbage collector's reach."""

from __future__ import annotations

import asyncio
import gc
import shutil
import weakref
from pathlib import Path

from service.config import Settings
from service.main import _freeze_heap, _refreeze_heap
from service.metrics import ServiceMetrics
from service.repository import ModelRepository, discover_versions, fingerprint
from tests.service.conftest import TrainedBundles, make_repo


def test_layout_discovery(bundles: TrainedBundles, tmp_path: Path) -> None:
    repo = make_repo(bundles, tmp_path / "models")
    assert discover_versions(repo / "cancer") == {1: repo / "cancer" / "1"}
    assert discover_versions(repo / "digits") == {1: repo / "digits"}  # bare bundle
    (repo / "cancer" / ".2.tmp").mkdir()  # write_bundle's temporary siblings are ignored
    (repo / "cancer" / "notes").mkdir()
    shutil.copytree(bundles.cancer, repo / "cancer" / "10")
    assert sorted(discover_versions(repo / "cancer")) == [1, 10]
    before = fingerprint(repo / "cancer" / "10")
    (repo / "cancer" / "10" / "bundle.json").write_text(
        (repo / "cancer" / "10" / "bundle.json").read_text() + " ")
    assert fingerprint(repo / "cancer" / "10") != before


async def _reload_and_watch(repo_dir: Path, hook: bool) -> bool:
    repository = ModelRepository(Settings(models=repo_dir, providers=["CPUExecutionProvider"]),
                                 ServiceMetrics())
    await repository.load_all()
    _freeze_heap()
    if hook:
        repository.after_unload = _refreeze_heap
    old = repository.get("cancer")
    scorer_ref, version_ref = weakref.ref(old.scorer), weakref.ref(old)
    del old
    report = await repository.reload("cancer", force=True)
    assert report.loaded == [1]
    await asyncio.gather(*list(repository._retiring))
    freed = scorer_ref() is None and version_ref() is None
    await repository.close()
    return freed


def test_unloaded_version_is_freed_despite_the_frozen_heap(bundles: TrainedBundles,
                                                           tmp_path: Path) -> None:
    """What the app does: freeze after loading, re-freeze after each unload."""
    repo_dir = make_repo(bundles, tmp_path / "models")
    try:
        freed = asyncio.run(_reload_and_watch(repo_dir, hook=True))
    finally:
        gc.unfreeze()
    assert freed
