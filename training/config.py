"""The knobs of one training run, in one dataclass that is also the ``anomaly train`` flags.

Kept free of torch so that ``anomaly --help`` and the flag parser load without it. Values are
checked when a config is made (:meth:`TrainConfig.__post_init__`), so a bad flag fails before
any data is read or any network is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from anomaly.errors import InputError


def _flag(help_text: str, flag: str | None = None, metavar: str | None = None
          ) -> dict[str, object]:
    out: dict[str, object] = {"help": help_text}
    if flag:
        out["flag"] = flag
    if metavar:
        out["metavar"] = metavar
    return out


@dataclass
class TrainConfig:
    """Knobs of one training run. Defaults suit a few thousand tabular rows; image bundles get
    their own defaults in :func:`training.pipeline.image_config`. Each field with help text
    is an ``anomaly train`` flag; flags not given keep the tabular or image default."""

    latent_dim: int = field(default=8, metadata=_flag("latent size d_z"))
    hidden: tuple[int, ...] = field(default=(128, 64), metadata=_flag(
        "MLP hidden sizes, e.g. 128,64"))
    architecture: Literal["mlp", "conv"] = field(default="mlp", metadata=_flag(
        "mlp or conv (images; conv needs height and width divisible by 4)"))
    likelihood: Literal["gaussian", "bernoulli"] | None = field(default=None, metadata=_flag(
        "image decoder: bernoulli or gaussian"))  # None: pick from the data
    var_floor: float = field(default=1e-3, metadata=_flag(
        "minimum decoder variance (Gaussian)"))
    epochs: int = field(default=200, metadata=_flag(
        "maximum epochs under early stopping (an epoch: one pass over the rows, or 65,536 "
        "rows of a larger table); under cross-fitting (small tables) every model trains "
        "this many epochs, or more to reach 800 optimiser steps"))
    batch_size: int = field(default=128, metadata=_flag("minibatch size"))
    lr: float = field(default=1e-3, metadata=_flag("Adam learning rate"))
    weight_decay: float = field(default=0.0, metadata=_flag("Adam weight decay"))
    patience: int = field(default=15, metadata=_flag(
        "early stopping: epochs without a new best mean or median validation ELBO"))
    kl_warmup_epochs: int = field(default=10, metadata=_flag(
        "epochs of linear KL warm-up", flag="--kl-warmup"))
    beta: float = field(default=1.0, metadata=_flag("KL weight after warm-up"))
    holdout_fraction: float = field(default=0.2, metadata=_flag(
        "share of normal data held out for early stopping and threshold calibration",
        flag="--holdout"))
    mc_samples: int = field(default=16, metadata=_flag(
        "default latent samples L when scoring", metavar="L"))
    noise: Literal["iid", "antithetic", "sobol"] = field(default="iid", metadata=_flag(
        "how the L latent draws are made by default: iid, antithetic pairs or scrambled "
        "Sobol points"))
    precision: Literal["fp32", "int8"] = field(default="fp32", metadata=_flag(
        "int8: quantize the scoring graphs' decoder (static, calibrated on the held-out "
        "normal data) and calibrate the threshold on the int8 scores"))
    target_fpr: float = field(default=0.01, metadata=_flag(
        "false-positive rate the threshold is set for"))
    seed: int = field(default=0, metadata=_flag("random seed"))
    device: str = field(default="auto", metadata=_flag("auto, cpu or cuda"))
    progress: bool = True
    conv_channels: tuple[int, ...] = field(default=(32, 64), metadata=_flag(
        "conv channels of the two stride-2 layers, e.g. 32,64"))
    dense: int = field(default=256, metadata=_flag("conv nets: width of the dense layer"))
    encoder_clip: float | None = field(default=10.0, metadata=_flag(
        "tables: the encoder reads standardised values clipped to [-C, C] (the likelihood "
        "still scores the real value), so one extreme value cannot overflow it", metavar="C"))
    score_kl: bool = field(default=True, metadata=_flag(
        "tables: add how atypical the row's latent code is to the score (see --latent-codes)"))
    #: 1,024 by default (2026-12-08): the ODDS mean AUROC 0.906 -> 0.919 against the
    #: free_energy score; with Student-t kernels make demo's breast-cancer FPR stays inside
    #: its interval (training/aggregate_posterior.py); the synthetic nasty tables lose up to
    #: 0.06, 0.03 on average (benchmarks/README.md, "Student-t kernels")
    latent_codes: int = field(default=1024, metadata=_flag(
        "tables, with --score-kl: measure the row's code against the codes of up to N "
        "fitted rows (aggregate_free_energy score); 0: against N(0, I), "
        "KL(q(z|x) || p(z)) (free_energy)", metavar="N"))
    grad_clip: float = field(default=5.0, metadata=_flag(
        "largest gradient norm per step (0: no clipping)"))
    #: "local": score images by the likelihood ratio against a local-smoothness reference
    #: (:mod:`training.reference`); "none": plain reconstruction probability.
    reference: Literal["none", "local"] = field(default="none", metadata=_flag(
        "images: 'local' (default) scores by the likelihood ratio against a local-smoothness "
        "model; 'none' by plain reconstruction probability"))

    def __post_init__(self) -> None:
        positive = {"latent_dim": self.latent_dim, "epochs": self.epochs,
                    "batch_size": self.batch_size, "mc_samples": self.mc_samples,
                    "dense": self.dense, "patience": self.patience}
        for name, value in positive.items():
            if value < 1:
                raise InputError(f"{name} must be at least 1, got {value}")
        checks = [
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.var_floor >= 0, f"var_floor must be >= 0, got {self.var_floor}"),
            (self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}"),
            (self.encoder_clip is None or self.encoder_clip > 0,
             f"encoder_clip must be positive, got {self.encoder_clip}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.latent_codes >= 0, f"latent_codes must be >= 0, got {self.latent_codes}"),
            (self.kl_warmup_epochs >= 0,
             f"kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs}"),
            (0 < self.holdout_fraction < 1,
             f"holdout fraction must be in (0, 1), got {self.holdout_fraction}"),
            (0 < self.target_fpr < 1, f"target FPR must be in (0, 1), got {self.target_fpr}"),
            (len(self.hidden) >= 1 and min(self.hidden) >= 1,
             f"hidden sizes must be positive, got {self.hidden}"),
            (len(self.conv_channels) == 2 and min(self.conv_channels) >= 1,
             f"conv_channels must be two positive sizes, got {self.conv_channels}"),
            (self.architecture in ("mlp", "conv"),
             f"architecture must be mlp or conv, got {self.architecture!r}"),
            (self.likelihood in (None, "gaussian", "bernoulli"),
             f"likelihood must be gaussian or bernoulli, got {self.likelihood!r}"),
            (self.reference in ("none", "local"),
             f"reference must be local or none, got {self.reference!r}"),
            (self.noise in ("iid", "antithetic", "sobol"),
             f"noise must be iid, antithetic or sobol, got {self.noise!r}"),
            (self.precision in ("fp32", "int8"),
             f"precision must be fp32 or int8, got {self.precision!r}"),
            (self.device in ("auto", "cpu") or self.device.startswith("cuda"),
             f"device must be auto, cpu or cuda[:N], got {self.device!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
