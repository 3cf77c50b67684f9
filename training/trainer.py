"""Fit a VAE on normal data: Adam, KL warm-up, early stopping on validation ELBO, seeded."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from anomaly.errors import TrainingError
from anomaly.progress import bar_options
from training.config import TrainConfig
from training.vae import VAE

#: Restarts at a 4x smaller learning rate before a diverging run is given up.
MAX_RESTARTS = 3
#: The most fitting rows one epoch draws. Early stopping, the KL warm-up and ``--epochs``
#: count epochs; a table with more fitting rows than this runs them as passes of this many
#: rows through one continuing shuffle, so it is validated, and stops, after as many
#: optimiser steps as a table of this size would. Counted in full passes, a 1M-row table
#: took ~25 s an epoch and dozens of epochs at once past convergence (a step count that
#: 62,400 rows reach in 73 epochs is 4.5 passes of 1M rows).
EPOCH_ROWS = 1 << 16

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    model: VAE
    best_epoch: int
    best_val_elbo: float
    epochs_run: int
    device: str
    duration_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    restarts: int = 0  # divergences survived by restoring the best weights at a lower lr


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


#: Below this many multiply-adds per forward minibatch, training runs on one torch thread.
#: Steps that small (tabular models, MLP image models) spend their time in per-op overhead,
#: which more threads only add to: on 2 shared cores (load ~4) a 78k-row table trained at
#: 22,900 rows/s on one thread and 1,700 on two (benchmarks/training_speed.py). The conv
#: image models are above it and keep torch's own thread count.
SINGLE_THREAD_MACS = 2e8


def macs_per_row(model: VAE) -> float:
    """Multiply-adds of one encoder and one decoder pass for a single row (Linear and
    convolution layers), counted with forward hooks on a zero input."""
    total = [0.0]

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(m, nn.Linear):
            total[0] += m.in_features * m.out_features
        elif isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            spatial = out if isinstance(m, nn.Conv2d) else inputs[0]
            total[0] += (m.in_channels // m.groups * m.out_channels * m.kernel_size[0] *
                         m.kernel_size[1] * spatial.shape[2] * spatial.shape[3])

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d)]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model.encoder(torch.zeros(1, model.input_dim, device=device))
            model.decoder(torch.zeros(1, model.latent_dim, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def choose_threads(model: VAE, config: TrainConfig) -> int:
    """Torch threads for fitting ``model`` on the CPU: 1 for small steps (see
    :data:`SINGLE_THREAD_MACS`), else torch's current count. Depends only on the model and
    the batch size, so a seeded run is the same run on every machine of one core count."""
    if macs_per_row(model) * config.batch_size < SINGLE_THREAD_MACS:
        return 1
    return torch.get_num_threads()


@contextmanager
def train_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _beta(epoch: int, config: TrainConfig) -> float:
    """KL weight: linear warm-up from ~0 to ``beta`` over ``kl_warmup_epochs``."""
    if config.kl_warmup_epochs <= 0:
        return config.beta
    return config.beta * min(1.0, (epoch + 1) / config.kl_warmup_epochs)


class Validation(NamedTuple):
    """One epoch's validation figures, per row, in nats."""

    elbo: float  #: mean ELBO: selects the kept weights; the curve and manifest show it
    rec: float  #: mean reconstruction term
    kl: float  #: mean KL term
    median_elbo: float  #: median row's ELBO: while it improves, training goes on (see fit)


@torch.no_grad()
def evaluate_elbo(model: VAE, x: torch.Tensor, generator: torch.Generator,
                  batch_size: int = 1024) -> Validation:
    """ELBO, reconstruction and KL of the rows of ``x`` with one latent draw each."""
    model.eval()
    elbos: list[torch.Tensor] = []
    rec_sum = kl_sum = 0.0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        eps = torch.randn(xb.shape[0], model.latent_dim, generator=generator,
                          device="cpu").to(x.device)
        terms = model.elbo(xb, eps)
        rec_sum += float(terms.rec.sum())
        kl_sum += float(terms.kl.sum())
        elbos.append((terms.rec - terms.kl).reshape(-1).cpu())  # (B,)
    n = x.shape[0]
    median = float(torch.cat(elbos).median()) if elbos else math.nan
    return Validation((rec_sum - kl_sum) / n, rec_sum / n, kl_sum / n, median)


def fit(model: VAE, x_train: np.ndarray, x_val: np.ndarray, config: TrainConfig,
        threads: int | None = None) -> FitResult:
    """Train ``model`` on ``x_train`` (N, D); keep the weights with the best mean validation
    ELBO (measured at full beta, so epochs compare), stop after ``patience`` epochs in which
    neither the mean nor the median row's validation ELBO reached a new best.
    ``threads``: torch threads on the CPU (default :func:`choose_threads`).

    Why two: each alone stops too early on real tables. The mean follows a few rows: on ODDS
    optdigits (seed 2) rows with pixel values the training rows rarely show fell steeply as
    the decoder grew confident on those columns, so the mean peaked at epoch 12 and training
    stopped at 27 (test AUROC 0.771) while the median row kept improving, and the mean itself
    recovered to a new best at epoch 195 (AUROC 0.944). The median ignores a few rows: with
    ten extreme glitch rows in the normal data, the first epochs spend their capacity on them
    and every typical row gets worse for a while, so the median peaked at epoch 12 (AUROC
    0.609) while the mean kept rising (best at 51, AUROC 0.852)."""
    device = resolve_device(config.device)
    if device.type != "cpu":
        return _fit(model, x_train, x_val, config, device)
    with train_threads(threads or choose_threads(model, config)):
        return _fit(model, x_train, x_val, config, device)


def _fit(model: VAE, x_train: np.ndarray, x_val: np.ndarray, config: TrainConfig,
         device: torch.device) -> FitResult:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    val_gen_seed = config.seed + 1
    model.to(device)
    xt = torch.as_tensor(x_train, dtype=torch.float32, device=device)
    xv = torch.as_tensor(x_val, dtype=torch.float32, device=device)
    # foreach: one multi-tensor op per Adam step instead of one per parameter tensor, the
    # same arithmetic (bit-identical weights, measured) at ~25% less time per small step
    lr = config.lr
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=config.weight_decay,
                           foreach=True)
    best_state = copy.deepcopy(model.state_dict())
    best_elbo, best_epoch, history = -math.inf, 0, []
    best_median, improved = -math.inf, 0  # improved: the last epoch either criterion rose
    restarts = 0
    n = xt.shape[0]
    batches = _batches(n, config.batch_size, gen, device)
    per_epoch = -(-min(n, EPOCH_ROWS) // config.batch_size)  # optimiser steps per epoch
    bar = tqdm(range(config.epochs), desc="training", unit="epoch", disable=not config.progress,
               leave=False, **bar_options())
    epoch = -1
    for epoch in bar:
        model.train()
        beta = _beta(epoch, config)
        loss_sum, rows = 0.0, 0
        for _ in range(per_epoch):
            xb = xt[next(batches)]
            eps = torch.randn(xb.shape[0], model.latent_dim, generator=gen).to(device)
            loss = model.elbo(xb, eps).loss(beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            loss_sum += loss.item() * xb.shape[0]
            rows += xb.shape[0]
        val = evaluate_elbo(model, xv, torch.Generator().manual_seed(val_gen_seed))
        val_elbo = val.elbo
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / rows, "val_elbo": val_elbo,
                        "val_median_elbo": val.median_elbo, "val_rec": val.rec,
                        "val_kl": val.kl, "beta": beta})
        if not (math.isfinite(val_elbo) and math.isfinite(val.median_elbo)
                and math.isfinite(loss_sum)):
            # diverged: back to the best weights so far with a smaller step, a few times
            restarts += 1
            if restarts > MAX_RESTARTS:
                raise TrainingError(
                    f"training diverged (ELBO {val_elbo}) at epoch {epoch + 1}, also after "
                    f"{MAX_RESTARTS} restarts at a 4x smaller learning rate each; try "
                    "--lr 1e-4, a larger --var-floor, or --exclude the column with extreme "
                    "values")
            lr /= 4
            log.warning("training diverged at epoch %d; restarting from the best weights "
                        "so far with learning rate %g", epoch + 1, lr)
            model.load_state_dict(best_state)
            opt = torch.optim.Adam(model.parameters(), lr=lr,
                                   weight_decay=config.weight_decay, foreach=True)
            history.pop()
            continue
        # Only compare once the KL weight is at full strength: earlier ELBOs are not the
        # objective the user asked for.
        if epoch + 1 >= config.kl_warmup_epochs:
            if val_elbo > best_elbo:
                best_elbo, best_epoch, improved = val_elbo, epoch + 1, epoch + 1
                best_state = copy.deepcopy(model.state_dict())
            if val.median_elbo > best_median:
                best_median, improved = val.median_elbo, epoch + 1
        bar.set_postfix(refresh=False, loss=f"{loss_sum / rows:.2f}", val_elbo=f"{val_elbo:.2f}",
                        best=best_epoch)
        if improved and epoch + 1 - improved >= config.patience:
            break
    bar.close()
    if best_epoch == 0:  # fewer epochs than the warm-up: keep the last weights
        best_elbo, best_epoch = history[-1]["val_elbo"], len(history)
        best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, best_epoch, best_elbo, epoch + 1, str(device),
                     time.perf_counter() - started, history, restarts)


def _batches(n: int, batch_size: int, gen: torch.Generator,
             device: torch.device) -> Iterator[torch.Tensor]:
    """Row indices of successive minibatches, forever: one shuffle per pass over the n rows,
    drawn when the pass begins (so an epoch that is one whole pass draws exactly as a loop
    over ``randperm`` does), the last batch of a pass the remainder."""
    while True:
        perm = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, batch_size):
            yield perm[start : start + batch_size]
