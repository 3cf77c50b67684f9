"""A diverging run restarts from its best weights at a smaller learning rate; one that keeps
diverging ends in one clear line (exit 4), never an internal error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import training.trainer as trainer
from tests.conftest import make_tabular
from training import tabular_config, train_tabular


def test_a_nan_epoch_is_survived_by_a_restart(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = trainer.evaluate_elbo
    calls = {"n": 0}

    def once_nan(*args: Any, **kwargs: Any) -> trainer.Validation:
        calls["n"] += 1
        nan = float("nan")
        return trainer.Validation(nan, 0.0, 0.0, nan) if calls["n"] == 4 \
            else real(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate_elbo", once_nan)
    cols = make_tabular(800, seed=2)
    cols.pop("is_anomaly")
    report = train_tabular(cols, tmp_path / "b", "b", tabular_config(
        epochs=8, kl_warmup_epochs=2, progress=False))
    assert report.fit.restarts == 1
    assert np.isfinite(report.manifest.threshold.value)
    assert len(report.fit.history) == report.fit.epochs_run - 1  # the diverged epoch dropped


def test_a_run_that_keeps_diverging_says_what_to_try(tmp_path: Path) -> None:
    cols = make_tabular(400, seed=2)
    cols.pop("is_anomaly")
    pacsv.write_csv(pa.table(cols), tmp_path / "t.csv")
    proc = subprocess.run(
        [sys.executable, "-m", "anomaly", "train", str(tmp_path / "t.csv"), "--out",
         str(tmp_path / "m"), "--lr", "1e9", "--grad-clip", "0", "--epochs", "30", "--quiet"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 4, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # after the restart warnings
    assert last.startswith("error: training diverged") and "--lr 1e-4" in last
    assert "internal error" not in proc.stderr and not (tmp_path / "m").exists()


def test_early_stopping_follows_the_median_row_not_the_mean(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A validation mean that falls (a few rows with rare values) while the median row keeps
    improving must not stop training; the mean is still what the curve and manifest show."""
    calls = {"n": 0}

    def diverging_mean(*args: Any, **kwargs: Any) -> trainer.Validation:
        calls["n"] += 1
        k = float(calls["n"])
        return trainer.Validation(elbo=-10.0 - 5 * k, rec=-8.0, kl=2.0, median_elbo=-50.0 + k)

    monkeypatch.setattr(trainer, "evaluate_elbo", diverging_mean)
    cols = make_tabular(600, seed=3)
    cols.pop("is_anomaly")
    report = train_tabular(cols, tmp_path / "b", "b", tabular_config(
        epochs=12, patience=3, kl_warmup_epochs=2, progress=False))
    assert report.fit.epochs_run == 12 and report.fit.best_epoch == 12
    assert report.fit.best_val_elbo == pytest.approx(-10.0 - 5 * 12)
    assert [h["val_elbo"] for h in report.fit.history][:2] == [-15.0, -20.0]


def test_validation_median_is_the_median_row_elbo() -> None:
    import torch

    from training.likelihood import Likelihood
    from training.trainer import evaluate_elbo
    from training.vae import build_vae

    torch.manual_seed(0)
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(4))  # (N, D)
    model = build_vae(5, Likelihood([("gaussian", 0, 5)]), "mlp", 4, (16,))
    val = evaluate_elbo(model, x, torch.Generator().manual_seed(1), batch_size=64)
    eps = torch.randn(x.shape[0], 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        per_row = torch.cat([(t.rec - t.kl) for t in
                             (model.elbo(x[i:i + 64], eps[i:i + 64]) for i in range(0, 300, 64))])
    assert val.median_elbo == pytest.approx(float(per_row.median()), rel=1e-6)
    assert val.elbo == pytest.approx(float(per_row.mean()), rel=1e-5)
