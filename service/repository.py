"""The model repository: ``<root>/<name>/<version>/`` bundles (a bare ``<root>/<name>/``
bundle is version 1), all loaded at start, reloaded on demand or by polling.

Swaps are atomic and lossless: a reload builds the new versions off the event loop, then
replaces the model's version table in one assignment. A request holds a *lease* on the
version it resolved, so an old version keeps serving its leased requests and queued samples
until they finish; only then is its batcher closed. A failed load keeps whatever served
before, and is logged, counted (``anomaly_model_load_failures_total``) and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anomaly.bundle import MANIFEST
from anomaly.errors import AnomalyError, quoted
from anomaly.inference import Scorer
from service.batching import BatchConfig, DynamicBatcher
from service.config import Settings
from service.errors import ModelNotFoundError
from service.metrics import ServiceMetrics, VersionMetrics

log = logging.getLogger("service.repository")

#: Model directory names that become URL path segments and metric labels.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass
class ModelVersion:
    """One loaded bundle with its session, batcher and metric handles."""

    name: str
    version: int
    path: Path
    fingerprint: str
    scorer: Scorer
    batcher: DynamicBatcher
    metrics: VersionMetrics
    loaded_at: float
    leases: int = 0
    retired: bool = False
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def describe(self) -> dict[str, Any]:
        m = self.scorer.manifest
        return {
            "version": self.version,
            "kind": m.kind,
            "input": m.input.model_dump(mode="json"),
            "input_dim": m.model.input_dim,
            "threshold": m.threshold.value,
            "target_fpr": m.threshold.target_fpr,
            "mc_samples": self.scorer.mc_samples,
            "provider": self.scorer.provider,
            "providers": list(self.scorer.graph.providers),
            "bundle_name": m.name,
            "created_at": m.created_at,
            "loaded_at": _iso(self.loaded_at),
            "path": str(self.path),
        }


@dataclass
class LoadFailure:
    version: int
    fingerprint: str
    error: str
    at: float

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "error": self.error, "at": _iso(self.at)}


@dataclass
class ModelEntry:
    """A model name and its loaded versions; ``versions`` is replaced, never mutated."""

    name: str
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    failures: dict[int, LoadFailure] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    latest: ModelVersion | None = None  # the highest loaded version: the default

    def swap(self, versions: dict[int, ModelVersion]) -> None:
        """Install a new version table (one assignment each: atomic on the event loop)."""
        self.versions = versions
        self.latest = versions[max(versions)] if versions else None


@dataclass
class ReloadReport:
    model: str
    loaded: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    unloaded: list[int] = field(default_factory=list)
    failed: list[LoadFailure] = field(default_factory=list)
    serving: list[int] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "loaded": self.loaded, "unchanged": self.unchanged,
                "unloaded": self.unloaded, "failed": [f.describe() for f in self.failed],
                "serving": self.serving}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def discover_versions(model_dir: Path) -> dict[int, Path]:
    """{version: bundle dir} of one model directory (numeric subdirectories, or the
    directory itself as version 1 when it holds bundle.json)."""
    if (model_dir / MANIFEST).is_file():
        return {1: model_dir}
    found: dict[int, Path] = {}
    with contextlib.suppress(OSError):
        for child in model_dir.iterdir():
            if child.is_dir() and child.name.isdigit() and int(child.name) > 0:
                found[int(child.name)] = child
    return found


def fingerprint(bundle_dir: Path) -> str:
    """Changes whenever a file of the bundle is replaced, rewritten or (re)named."""
    digest = hashlib.sha256()
    try:
        st = bundle_dir.stat()
        digest.update(f"{st.st_ino}:{st.st_mtime_ns}".encode())
        for child in sorted(bundle_dir.iterdir()):
            cs = child.stat()
            digest.update(f"{child.name}:{cs.st_size}:{cs.st_mtime_ns}:{cs.st_ino}".encode())
    except OSError as exc:
        digest.update(repr(exc).encode())
    return digest.hexdigest()


class ModelRepository:
    """Every model of one repository directory, for one event loop."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.root = Path(settings.models)
        self.metrics = metrics
        self.models: dict[str, ModelEntry] = {}
        self.started = False
        self._retiring: set[asyncio.Task[None]] = set()
        #: called after a retired version is closed (the app re-freezes the GC heap there)
        self.after_unload: Callable[[], None] | None = None

    # --- lookup -----------------------------------------------------------------------------

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        entry = self.models.get(name)
        if entry is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise ModelNotFoundError(f"no model named {quoted(name)} is loaded (loaded: {known})")
        if version is None:
            latest = entry.latest
            if latest is None:
                raise ModelNotFoundError(f"model '{name}' has no version that loaded; see "
                                         "GET /v1/models for the load error")
            return latest
        mv = entry.versions.get(version)
        if mv is None:
            raise ModelNotFoundError(f"model '{name}' has no version {version} loaded "
                                     f"(loaded: {sorted(entry.versions)})")
        return mv

    @contextlib.contextmanager
    def lease(self, name: str, version: int | None = None) -> Iterator[ModelVersion]:
        """Resolve a version and keep it alive until the block ends, across any reload."""
        mv = self.get(name, version)
        mv.leases += 1
        try:
            yield mv
        finally:
            mv.leases -= 1
            if mv.retired and mv.leases == 0:
                mv.drained.set()

    def is_loaded(self, name: str, version: int) -> bool:
        entry = self.models.get(name)
        return entry is not None and version in entry.versions

    @property
    def ready(self) -> bool:
        """Ready when the first load is done and every model has a serving version."""
        return self.started and bool(self.models) and all(
            e.versions for e in self.models.values())

    def model_names_on_disk(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and MODEL_NAME.match(p.name))

    # --- loading ----------------------------------------------------------------------------

    async def load_all(self) -> list[ReloadReport]:
        """Load every model found (at start, and on each poll)."""
        names = set(self.model_names_on_disk()) | set(self.models)
        reports = [await self.reload(name, poll=True) for name in sorted(names)]
        self.started = True
        return reports

    async def reload(self, name: str, force: bool = False, poll: bool = False
                     ) -> ReloadReport:
        """Bring ``name`` in line with the disk. Versions whose files did not change are kept
        (``force`` reloads them anyway); new or changed ones are loaded, missing ones are
        unloaded. ``poll`` does not retry a failed bundle whose files did not change."""
        model_dir = self.root / name
        if not MODEL_NAME.match(name) or (name not in self.models and not model_dir.is_dir()):
            raise ModelNotFoundError(f"no model directory {model_dir}")
        if name not in self.models:
            self.models[name] = ModelEntry(name)
            self.metrics.model_seen(name)
        entry = self.models[name]
        report = ReloadReport(name)
        async with entry.lock:
            found = discover_versions(model_dir)
            current = entry.versions
            new: dict[int, ModelVersion] = {}
            for version, path in sorted(found.items()):
                fp = fingerprint(path)
                old = current.get(version)
                if old is not None and old.fingerprint == fp and not force:
                    new[version] = old
                    report.unchanged.append(version)
                    continue
                failed_before = entry.failures.get(version)
                if poll and failed_before is not None and failed_before.fingerprint == fp:
                    if old is not None:
                        new[version] = old
                    continue
                try:
                    new[version] = await self._load(name, version, path, fp)
                except Exception as exc:  # any failure keeps the old version serving
                    failure = LoadFailure(version, fp, _describe(exc), time.time())
                    entry.failures[version] = failure
                    report.failed.append(failure)
                    self.metrics.model_load_failed(name)
                    log.error("loading %s version %d from %s failed: %s%s", name, version,
                              path, failure.error,
                              "; the previous load keeps serving" if old else "",
                              extra={"fields": {"model": name, "version": version}})
                    if old is not None:
                        new[version] = old
                else:
                    entry.failures.pop(version, None)
                    report.loaded.append(version)
            for version in list(entry.failures):
                if version not in found:
                    del entry.failures[version]
            entry.swap(new)  # the atomic swap
            report.serving = sorted(new)
            report.unloaded = sorted(v for v in current if v not in new)
            for version, old in current.items():
                if new.get(version) is not old:
                    self._retire(old, replacement=new.get(version))
            if report.loaded:
                self.metrics.model_loaded(name)
            if not found and not model_dir.is_dir():
                del self.models[name]  # the directory is gone: forget the model
                self.metrics.forget_model(name)
            else:
                self.metrics.set_ready(name, bool(new))
        if report.loaded or report.unloaded:
            log.info("model %s: loaded %s, unloaded %s, serving %s", name, report.loaded,
                     report.unloaded, report.serving,
                     extra={"fields": {"model": name}})
        return report

    async def _load(self, name: str, version: int, path: Path, fp: str) -> ModelVersion:
        s = self.settings
        scorer = await asyncio.to_thread(
            Scorer, path, providers=s.providers, mc_samples=s.mc_samples,
            intra_op_threads=s.intra_op_threads, max_pixels=s.max_image_pixels)
        if s.providers and scorer.provider != s.providers[0]:
            log.warning("model %s version %d runs on %s: %s is not available here", name,
                        version, scorer.provider, s.providers[0],
                        extra={"fields": {"model": name, "version": version,
                                          "provider": scorer.provider}})
        bundle = scorer.bundle
        vm = self.metrics.version(name, version, scorer.provider, bundle.threshold,
                                  bundle.manifest.threshold.target_fpr,
                                  bundle.calibration_scores)
        batcher = DynamicBatcher(scorer, BatchConfig.from_settings(s), vm,
                                 f"{name}-v{version}")
        batcher.start()
        return ModelVersion(name, version, path, fp, scorer, batcher, vm, time.time())

    def _retire(self, old: ModelVersion, replacement: ModelVersion | None) -> None:
        """Close ``old`` once its leased requests are done; fix up its gauges."""
        old.retired = True
        if old.leases == 0:
            old.drained.set()
        if replacement is None:
            self.metrics.retire(old.name, old.version, old.scorer.provider)
        elif replacement.scorer.provider != old.scorer.provider:
            with contextlib.suppress(KeyError):
                self.metrics.model_info.remove(old.name, str(old.version), old.scorer.provider)

        async def drain() -> None:
            await old.drained.wait()
            await old.batcher.close()
            if replacement is None and not self.is_loaded(old.name, old.version):
                # counted everything it held: now its series go (unless a reload brought the
                # version back meanwhile, which shares them)
                self.metrics.forget_version(old.name, old.version)
            if self.after_unload is not None:
                self.after_unload()

        task = asyncio.get_running_loop().create_task(drain())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def poll_forever(self, interval_s: float) -> None:
        """Rescan the repository every ``interval_s`` seconds (new models, versions, edits)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.load_all()
            except Exception:  # a bad scan must not stop polling
                log.exception("repository poll failed")

    async def close(self) -> None:
        for entry in list(self.models.values()):
            for mv in entry.versions.values():
                self._retire(mv, replacement=None)
            entry.swap({})
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AnomalyError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
