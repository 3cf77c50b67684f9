"""Normal data in, model bundle out: split, fit, export, calibrate, plot, write atomically."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import logging
import os
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from anomaly import plots
from anomaly.bundle import (
    SCHEMA_VERSION,
    BundleFiles,
    ImageInput,
    InputSchema,
    Manifest,
    ModelInfo,
    ScoreKind,
    TabularInput,
    ThresholdInfo,
    TrainingSummary,
    load_bundle,
    write_bundle,
)
from anomaly.calibration import calibrate
from anomaly.errors import InputError
from anomaly.inference.frame import frame_columns, is_frame
from anomaly.inference.noise import DEFAULT_SEED
from anomaly.preprocessing import TabularPreprocessor
from training.aggregate_posterior import (
    AggregatePosterior,
    fit_aggregate_posterior,
    weight_rows,
)
from training.bundle_graphs import (
    export_for_bundle,
    score_rows,
    score_unexported,
    with_mc_error,
)
from training.export import ExportedGraphs
from training.likelihood import Likelihood
from training.reference import LocalReference, fit_local_reference
from training.splits import SplitPlan, fixed_epochs, plan_splits
from training.tabular import infer_schema, likelihood_blocks
from training.trainer import FitResult, TrainConfig, fit
from training.vae import build_vae

if TYPE_CHECKING:
    import pandas as pd

#: Fewer calibration scores above the threshold than this and training warns.
MIN_TAIL = 10

log = logging.getLogger(__name__)


@dataclass
class TrainReport:
    path: Path
    manifest: Manifest
    fit: FitResult
    calibration_scores: np.ndarray  # (N_calibration,) sorted


def fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for arr in arrays:
        digest.update(np.ascontiguousarray(arr).tobytes())
    return "sha256:" + digest.hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("vae-anomaly", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "numpy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def tabular_config(**overrides: object) -> TrainConfig:
    """Defaults for tabular rows: MLP, Gaussian/categorical likelihood."""
    return dataclasses.replace(TrainConfig(), **overrides)  # type: ignore[arg-type]


def image_config(schema: ImageInput, **overrides: object) -> TrainConfig:
    """Defaults for images: a conv VAE when the size allows (H, W divisible by 4), else an MLP.

    Likelihood: Gaussian with learned per-pixel variance floored at 0.1 (sd >= 0.32 on [0, 1]
    pixels), latent size 8, scored by the likelihood ratio against the local-smoothness
    reference (:mod:`training.reference`). Pixel likelihoods reward images for confidently
    predicted dark background, so thin, simple shapes (an MNIST "1") score as *more* normal than
    the training data; the floor caps that reward per pixel and the reference cancels what is
    left of it. On the MNIST leave-one-digit-out tuning runs (benchmarks/README.md) the floor
    raised the AUROC of digit 1 from 0.13 (Bernoulli, latent 8) and 0.23 (Gaussian, floor 0.01)
    to 0.40, and the reference from 0.36 to 0.72 (mean of ten digits 0.79 -> 0.85 on 20,000
    images). Both are product defaults chosen on that benchmark, not by a criterion on normal
    data alone (a lower floor always gives a better validation ELBO).

    KL weight beta 0.25: with the floor the Gaussian term weighs a squared pixel error by at
    most 1 / (2 * 0.1) = 5, so at beta 1 the KL term blurs the reconstructions of every digit
    alike; at 0.25 the conv VAE reconstructs sharper and separates the complex held-out digits
    better (MNIST leave-one-digit-out, conv, 8 epochs: mean AUROC 0.904 -> 0.909, digits 0, 8
    and 9 +0.01, no digit worse by more than 0.002; beta 0.1 measured the same as 0.25)."""
    conv = schema.height % 4 == 0 and schema.width % 4 == 0
    base = TrainConfig(architecture="conv" if conv else "mlp", likelihood="gaussian",
                       latent_dim=8, hidden=(512, 256), epochs=100, patience=10,
                       var_floor=0.1, mc_samples=16, reference="local", beta=0.25)
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def train_tabular(columns: Mapping[str, np.ndarray] | pd.DataFrame,
                  out: str | os.PathLike[str], name: str,
                  config: TrainConfig | None = None, categorical: Collection[str] = (),
                  exclude: Collection[str] = ()) -> TrainReport:
    """Train a tabular bundle on normal rows given as {column: values} or a pandas DataFrame
    (whose numeric columns become numeric, the rest categorical)."""
    if is_frame(columns):
        columns = frame_columns(columns)
    config = config or TrainConfig()
    n = len(next(iter(columns.values())))
    plan = plan_splits(n, config.holdout_fraction, config.target_fpr, config.seed)
    # the schema (scaling, categories, dropped columns) is learnt from the rows the shipped
    # model is fitted on, never from calibration rows
    fitted = np.union1d(plan.train, plan.val)
    schema = infer_schema(columns, categorical, exclude, rows=fitted)
    prep = TabularPreprocessor(schema)
    x = prep.transform({k: np.asarray(v) for k, v in columns.items()}).x  # (n, D)
    likelihood = Likelihood(likelihood_blocks(schema, prep.blocks), config.var_floor)
    return _train(x, plan, likelihood, schema, prep.feature_names, out, name, config)


def train_images(images: np.ndarray, schema: ImageInput, out: str | os.PathLike[str], name: str,
                 config: TrainConfig | None = None) -> TrainReport:
    """Train an image bundle on normal images (N, C, H, W) already scaled to [0, 1]."""
    config = config or TrainConfig()
    c, h, w = schema.channels, schema.height, schema.width
    if images.ndim != 4 or images.shape[1:] != (c, h, w):
        raise InputError(f"images must be (N, {c}, {h}, {w}), got {images.shape}")
    x = images.reshape(images.shape[0], -1).astype(np.float32)
    if x.min() < 0 or x.max() > 1:
        raise InputError("image values must be scaled to [0, 1]")
    plan = plan_splits(x.shape[0], config.holdout_fraction, config.target_fpr, config.seed)
    kind = config.likelihood or "bernoulli"
    likelihood = Likelihood.uniform(kind, x.shape[1], config.var_floor)
    names = [f"c{ch}_y{yy}_x{xx}" for ch in range(c) for yy in range(h) for xx in range(w)]
    return _train(x, plan, likelihood, schema, names, out, name, config)


@dataclass
class _Fitted:
    """One fitted model, exported: its result, its graphs and its reference."""

    result: FitResult
    graphs: ExportedGraphs | None  # None: a fold model, never shipped nor exported
    reference: LocalReference | None
    kl: bool
    latent_prior: AggregatePosterior | None

    def scores(self, x: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
        """(scores (N,), their standard errors (N,)) of rows ``x``, in row order."""
        if self.graphs is None:
            return score_unexported(self.result.model, self.reference, x, config, self.kl,
                                    self.latent_prior)
        return score_rows(self.graphs, x, config)


def _fit_one(x_fit: np.ndarray, x_val: np.ndarray, likelihood: Likelihood,
             image_shape: tuple[int, int, int] | None, tabular: bool,
             config: TrainConfig, shipped: bool = True) -> _Fitted:
    """Fit one model; export it when it is ``shipped`` or its scores need the exported graph
    (int8: quantization changes them)."""
    torch.manual_seed(config.seed)  # weight initialisation is part of the seeded run
    vae = build_vae(x_fit.shape[1], likelihood, config.architecture, config.latent_dim,
                    tuple(config.hidden), image_shape, tuple(config.conv_channels),  # type: ignore[arg-type]
                    config.dense, encoder_clip=config.encoder_clip if tabular else None)
    reference = None
    if config.reference == "local":
        if image_shape is None or likelihood.kind != "gaussian":
            raise InputError("the local reference is for images with a Gaussian decoder: pass "
                             "--likelihood gaussian, or --reference none")
        reference = fit_local_reference(x_fit, image_shape, likelihood.var_floor)
    elif config.reference != "none":
        raise InputError(f"unknown reference {config.reference!r}: use 'local' or 'none'")
    result = fit(vae, x_fit, x_val, config)
    kl = tabular and config.score_kl
    prior = None
    if kl and config.latent_codes > 0:
        # the weight needs the fitted rows' -log RP: scored as the graph will, without the
        # latent term, on the rows the weight is taken from
        rows = weight_rows(x_fit.shape[0], config.latent_codes, config.seed)
        rec = np.full(x_fit.shape[0], np.nan)
        rec[rows] = score_unexported(result.model, None, x_fit[rows],
                                     dataclasses.replace(config, precision="fp32"))[0]
        prior = fit_aggregate_posterior(result.model, x_fit, rec, config.latent_codes,
                                        config.seed)
    if not shipped and config.precision == "fp32":
        return _Fitted(result, None, reference, kl, prior)
    return _Fitted(result, export_for_bundle(result.model, reference, x_fit, config, kl=kl,
                                             latent_prior=prior), reference, kl, prior)


def _train(x: np.ndarray, plan: SplitPlan, likelihood: Likelihood, schema: InputSchema,
           feature_names: list[str], out: str | os.PathLike[str], name: str,
           config: TrainConfig) -> TrainReport:
    started = time.perf_counter()
    image_shape = ((schema.channels, schema.height, schema.width)
                   if isinstance(schema, ImageInput) else None)
    tabular = image_shape is None
    if plan.method == "holdout":
        final = _fit_one(x[plan.train], x[plan.val], likelihood, image_shape, tabular, config)
        calibration, se = final.scores(x[plan.cal], config)
    else:
        epochs = fixed_epochs(plan.n, config.batch_size, config.epochs)
        fixed = dataclasses.replace(config, epochs=epochs, patience=epochs + 1)
        log.info("%d normal rows: cross-fitted calibration over %d folds, every model trained "
                 "for %d epochs", plan.n, len(plan.folds), epochs)
        calibration = np.empty(plan.n, dtype=np.float64)
        se = np.empty(plan.n, dtype=np.float64)
        for k, (fit_rows, out_rows) in enumerate(plan.folds):
            # the fold's own rows stand in for validation: no out-of-fold row may select
            # weights. The first fold's model is the one shipped (see training.splits)
            fold = _fit_one(x[fit_rows], x[fit_rows], likelihood, image_shape, tabular,
                            dataclasses.replace(fixed, seed=config.seed + k), shipped=k == 0)
            calibration[out_rows], se[out_rows] = fold.scores(x[out_rows], config)
            if k == 0:
                final = fold
    order = np.argsort(calibration, kind="stable")
    calibration, se = calibration[order], se[order]
    threshold = calibrate(calibration, config.target_fpr, seed=DEFAULT_SEED,
                          method=plan.method)
    threshold = with_mc_error(threshold, calibration, se, config)
    _warn_about(threshold)
    result = final.result
    reference = final.reference
    summary = TrainingSummary(
        rows_train=int(plan.train.size), rows_holdout=int(calibration.size),
        epochs=result.epochs_run, best_epoch=result.best_epoch,
        val_elbo=float(result.best_val_elbo), data_fingerprint=fingerprint(x),
        seed=config.seed, duration_s=round(time.perf_counter() - started, 3),
        device=result.device, versions=_versions(), history=result.history)
    model_config = {**result.model.config,
                    **{k: v for k, v in dataclasses.asdict(config).items()
                       if k in ("beta", "epochs", "batch_size", "lr", "kl_warmup_epochs",
                                "patience", "grad_clip")},
                    "calibration": plan.method, "folds": len(plan.folds),
                    "reference": reference.describe() if reference is not None else None,
                    "latent_prior": (final.latent_prior.describe()
                                     if final.latent_prior is not None else None)}
    manifest = Manifest(
        schema_version=SCHEMA_VERSION, name=name,
        kind="tabular" if isinstance(schema, TabularInput) else "image",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        input=schema,
        model=ModelInfo(score=_score_kind(reference is not None, tabular and config.score_kl,
                                          final.latent_prior is not None),
                        likelihood=likelihood.kind,
                        architecture=config.architecture,
                        input_dim=int(x.shape[1]), latent_dim=config.latent_dim,
                        mc_samples=config.mc_samples, noise=config.noise,
                        precision=config.precision, feature_names=feature_names,
                        config=model_config),
        threshold=threshold, training=summary,
        files=BundleFiles(model_sha256="computed-on-write"))
    figures = {
        "training_curve.png": plots.training_curve(result.history, result.best_epoch),
        "calibration_histogram.png": plots.score_histogram(calibration, threshold.value),
    }
    assert final.graphs is not None  # the shipped model is always exported
    path = write_bundle(out, manifest, final.graphs.full, calibration, figures,
                        score_onnx_bytes=final.graphs.score)
    return TrainReport(path, load_bundle(path).manifest, result, calibration)


def _score_kind(reference: bool, kl: bool, aggregate: bool) -> ScoreKind:
    if reference:
        return "likelihood_ratio"
    if kl:
        return "aggregate_free_energy" if aggregate else "free_energy"
    return "reconstruction_probability"


def _warn_about(threshold: ThresholdInfo) -> None:
    """Say when the calibration cannot keep the promise asked of it."""
    n, target = threshold.calibration_size, threshold.target_fpr
    if threshold.min_supported_fpr is not None and threshold.min_supported_fpr > target:
        log.warning(
            "%d calibration scores cannot support a target FPR of %g: the smallest they "
            "support is %.4f (1/(n+1)), so the threshold is the largest calibration score and "
            "its expected FPR is %.4f; give more normal data or a larger --target-fpr",
            n, target, threshold.min_supported_fpr, threshold.expected_fpr)
    elif n * target < MIN_TAIL:
        log.warning(
            "only %d calibration scores lie above the threshold for target FPR %g: its FPR "
            "interval %s is wide; give more normal data or a larger --target-fpr",
            round(n * target), target, tuple(round(v, 4) for v in threshold.fpr_ci))
