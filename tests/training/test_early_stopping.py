"""Early stopping: training goes on while the mean or the median row's validation ELBO still
improves, keeps the weights of the best mean, and stops when neither has for ``patience``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import training.trainer as trainer
from tests.conftest import make_tabular
from training import tabular_config, train_tabular


def _train_on_curve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    curve: list[tuple[float, float]]) -> Any:
    """Train 600 rows for len(curve) epochs (patience 3, warm-up 2) with the validation
    (mean, median) of epoch k replaced by ``curve[k - 1]``."""
    calls = {"n": 0}

    def scripted(*args: Any, **kwargs: Any) -> trainer.Validation:
        mean, median = curve[calls["n"]]
        calls["n"] += 1
        return trainer.Validation(elbo=mean, rec=mean + 2.0, kl=2.0, median_elbo=median)

    monkeypatch.setattr(trainer, "evaluate_elbo", scripted)
    cols = make_tabular(600, seed=3)
    cols.pop("is_anomaly")
    return train_tabular(cols, tmp_path / "b", "b", tabular_config(
        epochs=len(curve), patience=3, kl_warmup_epochs=2, progress=False)).fit


def test_a_falling_mean_does_not_stop_training_while_the_median_row_improves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mean dips (a few rows with rare values) and recovers late: training must reach the
    recovery and keep its weights."""
    means = [-20, -12, -10, -14, -18, -22, -25, -20, -15, -11, -9, -9.5, -9.7, -9.8, -9.9]
    curve = [(float(m), -30.0 + k) for k, m in enumerate(means)]  # the median always rises
    fit = _train_on_curve(tmp_path, monkeypatch, curve)
    assert fit.epochs_run == 15 and fit.best_epoch == 11
    assert fit.best_val_elbo == pytest.approx(-9.0)
    assert [h["val_median_elbo"] for h in fit.history][:2] == [-30.0, -29.0]


def test_a_falling_median_does_not_stop_training_while_the_mean_improves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Extreme rows in the normal data: the typical row gets worse while the model learns
    them, the mean keeps rising."""
    medians = [-8, -9, -10, -11, -12, -12, -11, -10, -9.5, -9.4, -9.3, -9.3]
    curve = [(-1000.0 / (k + 1), float(m)) for k, m in enumerate(medians)]
    fit = _train_on_curve(tmp_path, monkeypatch, curve)
    assert fit.epochs_run == 12 and fit.best_epoch == 12


def test_training_stops_when_neither_criterion_improves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    curve = [(-10.0 + min(k, 4), -5.0 + min(k, 5)) for k in range(20)]
    fit = _train_on_curve(tmp_path, monkeypatch, curve)
    # the mean's last best is epoch 5, the median's epoch 6: stop 3 epochs after 6
    assert fit.best_epoch == 5 and fit.epochs_run == 9


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


def test_an_epoch_of_a_large_table_is_a_fixed_number_of_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above EPOCH_ROWS fitting rows an epoch is that many rows of one continuing shuffle:
    every row once per pass, the passes reshuffled, and epochs of the same length; a table
    at or under it draws exactly as one ``randperm`` per epoch does."""
    import torch

    gen = torch.Generator().manual_seed(5)
    batches = trainer._batches(1000, 128, gen, torch.device("cpu"))
    first = torch.cat([next(batches) for _ in range(8)])
    second = torch.cat([next(batches) for _ in range(8)])
    assert torch.equal(first, torch.randperm(1000, generator=torch.Generator().manual_seed(5)))
    assert sorted(second.tolist()) == list(range(1000)) and not torch.equal(first, second)

    steps: list[int] = []
    real_elbo = trainer.VAE.elbo

    def counted(self: Any, x: Any, eps: Any) -> Any:
        if self.training:
            steps.append(x.shape[0])
        return real_elbo(self, x, eps)

    monkeypatch.setattr(trainer.VAE, "elbo", counted)
    monkeypatch.setattr(trainer, "EPOCH_ROWS", 500)
    cols = make_tabular(3000, seed=3)
    cols.pop("is_anomaly")
    fit = train_tabular(cols, tmp_path / "b", "b", tabular_config(
        epochs=3, patience=10, kl_warmup_epochs=1, batch_size=100, progress=False)).fit
    assert fit.epochs_run == 3 and len(fit.history) == 3
    assert steps == [100] * 15  # 5 steps of 100 rows per epoch, not a pass over 2,100 rows
