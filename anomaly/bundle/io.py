"""Reading and writing model bundles: a directory holding everything a scorer needs.

Layout::

    <bundle>/bundle.json             manifest (anomaly.schema.Manifest)
    <bundle>/model.onnx              x (B, D), eps (L, B, d_z) -> score, feature_scores,
                                     reconstruction
    <bundle>/score.onnx              x, eps -> score (the same model, score only; optional)
    <bundle>/calibration_scores.npy  sorted scores of held-out normal data (float64)
    <bundle>/*.png                   training curve, calibration histogram

Bundles are built in a temporary sibling directory and swapped into place
(:func:`anomaly._fs.atomic_dir`), so a reader, a repository poll included, never sees half
of one. Manifests of older schema versions are migrated on load (:func:`migrate`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from anomaly._fs import atomic_dir
from anomaly.bundle.schema import SCHEMA_VERSION, Manifest
from anomaly.errors import BundleError

MANIFEST = "bundle.json"


@dataclass(frozen=True)
class Bundle:
    """A loaded, validated bundle. ``calibration_scores`` is sorted ascending."""

    path: Path
    manifest: Manifest
    calibration_scores: np.ndarray

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.files.model

    @property
    def score_model_path(self) -> Path | None:
        """The score-only graph, or None for bundles that hold only the full one."""
        name = self.manifest.files.score_model
        return self.path / name if name else None

    @property
    def threshold(self) -> float:
        return self.manifest.threshold.value


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_bundle(path: str | os.PathLike[str], verify_hash: bool = True) -> Bundle:
    """Load and validate a bundle directory; raise :class:`BundleError` saying what to fix."""
    root = Path(path)
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"no model bundle at {root}: expected a directory with {MANIFEST}; "
                          "train one with `anomaly train`")
    if not manifest_path.is_file():
        raise BundleError(f"{root} is not a model bundle: {MANIFEST} is missing")
    try:
        raw = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(
            f"{manifest_path} is not valid JSON ({exc}); re-export the bundle") from exc
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(version, int):
        raise BundleError(f"{manifest_path} has no integer schema_version; is this a bundle?")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"bundle {root} has schema version {version}, newer than this library reads "
            f"({SCHEMA_VERSION}); upgrade vae-anomaly to score with it")
    try:
        manifest = Manifest.model_validate(migrate(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BundleError(f"{manifest_path} is invalid at '{where}': {first['msg']}") from exc

    model_path = root / manifest.files.model
    if not model_path.is_file():
        raise BundleError(f"bundle {root} is incomplete: {manifest.files.model} is missing")
    if verify_hash and sha256_file(model_path) != manifest.files.model_sha256:
        raise BundleError(f"{model_path} does not match the sha256 in {MANIFEST}: the file was "
                          "changed or corrupted; restore it or re-export the bundle")
    score_name = manifest.files.score_model
    if score_name:
        score_path = root / score_name
        if not score_path.is_file():
            raise BundleError(f"bundle {root} is incomplete: {score_name} is missing")
        if verify_hash and sha256_file(score_path) != manifest.files.score_model_sha256:
            raise BundleError(f"{score_path} does not match the sha256 in {MANIFEST}: the file "
                              "was changed or corrupted; restore it or re-export the bundle")
    calibration_path = root / manifest.files.calibration
    if not calibration_path.is_file():
        raise BundleError(f"bundle {root} is incomplete: {manifest.files.calibration} is missing")
    try:
        calibration = np.load(calibration_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {calibration_path}: {exc}") from exc
    if calibration.ndim != 1 or calibration.size == 0 or not np.all(np.isfinite(calibration)):
        raise BundleError(f"{calibration_path} must hold a non-empty 1-D array of finite scores")
    return Bundle(root, manifest, np.sort(calibration.astype(np.float64)))


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """A manifest of any schema version this library reads -> the current layout.

    v1 -> v2: the score kind moves from the free-form ``model.config["score"]`` (absent in
    the earliest bundles, which all scored plain reconstruction probability) to the typed
    ``model.score``."""
    out = dict(raw)
    if out.get("schema_version") == 1 and isinstance(out.get("model"), dict):
        model = dict(out["model"])
        config = dict(model.get("config") or {})
        model["score"] = config.pop("score", "reconstruction_probability")
        model["config"] = config
        out["model"] = model
        out["schema_version"] = 2
    return out


def write_bundle(
    out_dir: str | os.PathLike[str],
    manifest: Manifest,
    onnx_bytes: bytes,
    calibration_scores: np.ndarray,
    extra_files: Mapping[str, bytes] | None = None,
    overwrite: bool = True,
    score_onnx_bytes: bytes | None = None,
) -> Path:
    """Write a bundle atomically: build it in a temporary sibling, then rename into place.

    ``manifest.files.model_sha256`` is recomputed from ``onnx_bytes`` (and the score-only
    graph's name and hash from ``score_onnx_bytes``), so callers may pass any placeholder
    there.
    """
    target = Path(out_dir)
    if target.exists() and not overwrite:
        raise BundleError(f"{target} already exists; pass overwrite=True or choose another --out")
    if target.exists() and (not target.is_dir() or (
            not (target / MANIFEST).is_file() and any(target.iterdir()))):
        raise BundleError(f"{target} exists and is not a bundle; refusing to replace it")
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    score_update: dict[str, str | None] = {"score_model": None, "score_model_sha256": None}
    if score_onnx_bytes is not None:
        score_update = {"score_model": manifest.files.score_model or "score.onnx",
                        "score_model_sha256": hashlib.sha256(score_onnx_bytes).hexdigest()}
    files = manifest.files.model_copy(
        update={"model_sha256": digest, "plots": sorted(extra_files or {}), **score_update})
    final = manifest.model_copy(update={"files": files})
    calibration = io.BytesIO()
    np.save(calibration, np.sort(np.asarray(calibration_scores, dtype=np.float64)))
    with atomic_dir(target) as tmp:
        (tmp / manifest.files.model).write_bytes(onnx_bytes)
        if score_onnx_bytes is not None and files.score_model:
            (tmp / files.score_model).write_bytes(score_onnx_bytes)
        (tmp / manifest.files.calibration).write_bytes(calibration.getvalue())
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST).write_text(json.dumps(final.model_dump(mode="json"), indent=2) + "\n")
    return target
