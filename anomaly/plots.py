"""PNG figures people would rather look at than read. Each function returns PNG bytes.

matplotlib is imported on the first figure, not with this module: it is 0.45 s of every
``anomaly`` command's start-up (measured with ``python -X importtime -c "import anomaly.cli"``,
0.92 s in all), and most commands (score, info, serve) draw nothing."""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@functools.cache
def _pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


class ThresholdPoint(Protocol):
    """A threshold and what it achieves (as :class:`anomaly.calibration.metrics.ThresholdReport`
    has), for marking it on a figure without this module depending on calibration."""

    @property
    def threshold(self) -> float: ...
    @property
    def recall(self) -> float: ...
    @property
    def precision(self) -> float: ...


def _png(fig: Figure) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def training_curve(history: Sequence[dict[str, float]], best_epoch: int) -> bytes:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [-h["train_loss"] for h in history], label="train ELBO (beta-weighted)")
    ax.plot(epochs, [h["val_elbo"] for h in history], label="validation ELBO (mean)")
    if all("val_median_elbo" in h for h in history):  # the second early-stopping criterion
        ax.plot(epochs, [h["val_median_elbo"] for h in history],
                label="validation ELBO (median row)")
    ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"kept: epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO per sample (nats)")
    ax.legend(fontsize=8)
    ax.set_title("Training curve")
    return _png(fig)


def score_histogram(normal: np.ndarray, threshold: float, anomalous: np.ndarray | None = None,
                    title: str = "Calibration scores (held-out normal data)") -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    data = [normal] if anomalous is None else [normal, anomalous]
    lo, hi = np.percentile(np.concatenate(data), [0.5, 99.5])
    bins = np.linspace(lo, max(hi, threshold) + 1e-9, 60).tolist()
    ax.hist(np.clip(normal, lo, bins[-1]), bins=bins, alpha=0.6, density=True, label="normal")
    if anomalous is not None:
        ax.hist(np.clip(anomalous, lo, bins[-1]), bins=bins, alpha=0.6, density=True,
                label="anomalous")
    ax.axvline(threshold, color="red", lw=1.5, label=f"threshold {threshold:.2f}")
    ax.set_xlabel("anomaly score: -log reconstruction probability (nats)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig)


def roc_plot(fpr: np.ndarray, tpr: np.ndarray, auc: float,
             marker: tuple[float, float] | None = None) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, lw=2, label=f"AUROC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    if marker is not None:
        ax.plot(*marker, "o", color="red", label="calibrated threshold")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, reconstruction: np.ndarray | None = None,
                    score: float | None = None) -> bytes:
    """Input | heat map over the input | reconstruction, side by side.

    ``image`` and ``reconstruction`` are (C, H, W) in [0, 1]; ``heat`` is (H, W) in nats.
    """
    plt = _pyplot()
    panels = 3 if reconstruction is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(2.4 * panels, 2.6))

    def show(ax: Axes, arr: np.ndarray) -> None:
        arr = np.clip(arr, 0, 1)
        if arr.shape[0] == 1:
            ax.imshow(arr[0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(arr.transpose(1, 2, 0))
        ax.axis("off")

    show(axes[0], image)
    axes[0].set_title("input" + (f"\nscore {score:.1f}" if score is not None else ""), fontsize=8)
    show(axes[1], image)
    hot = axes[1].imshow(heat, cmap="inferno", alpha=0.6)
    axes[1].set_title("anomaly map (nats/pixel)", fontsize=8)
    fig.colorbar(hot, ax=axes[1], fraction=0.046, pad=0.04)
    if reconstruction is not None:
        show(axes[2], reconstruction)
        axes[2].set_title("reconstruction", fontsize=8)
    return _png(fig)


def heatmap_png(heat: np.ndarray) -> bytes:
    """The bare map as a small colour PNG (same pixels as the input), for API responses."""
    plt = _pyplot()
    lo, hi = float(heat.min()), float(heat.max())
    norm = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    rgba = (plt.get_cmap("inferno")(norm) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(buf, format="PNG")
    return buf.getvalue()


def pr_plot(fpr: np.ndarray, tpr: np.ndarray, n_pos: int, n_neg: int, auprc: float,
             marks: Sequence[tuple[str, ThresholdPoint]]) -> bytes:
    """Precision against recall, from the ROC points (tp = tpr * P, fp = fpr * N), with the
    share of anomalies (a random ranking's precision) as the baseline."""
    plt = _pyplot()
    tp, fp = tpr[1:] * n_pos, fpr[1:] * n_neg  # the (0, 0) point has no precision
    precision = tp / np.maximum(tp + fp, 1e-12)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.step(np.r_[0.0, tpr[1:]], np.r_[precision[0], precision], where="pre", lw=2,
            label=f"AUPRC = {auprc:.3f}")
    base = n_pos / (n_pos + n_neg)
    ax.axhline(base, color="grey", ls=":", lw=1, label=f"share of anomalies {base:.2f}")
    for (name, point), colour in zip(marks, ("red", "darkorange"), strict=False):
        ax.plot(point.recall, point.precision, "o", color=colour, label=f"{name} threshold")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (true-positive rate)")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall")
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig)


def label_histogram(scores: np.ndarray, labels: np.ndarray,
                     marks: Sequence[tuple[str, ThresholdPoint]]) -> bytes:
    """Scores of normal and anomalous samples, each as shares of its own group, with both
    thresholds. When the anomalies reach far beyond the spread of the normal scores (a table
    row 100x off scores ~1e4 nats), the axis is symmetric-log so that the normal bulk and the
    thresholds stay visible."""
    plt = _pyplot()
    lo, hi = np.percentile(scores, [0.5, 99.5])
    lo = min(lo, *(t.threshold for _, t in marks))
    hi = max(hi, *(t.threshold for _, t in marks)) + 1e-9
    normal_lo, normal_hi = np.percentile(scores[~labels], [5, 95])
    spread = max(float(normal_hi - normal_lo), 1e-6)
    symlog = hi - lo > 20 * spread
    if symlog:  # bins even in sign(x) log1p(|x| / c), the symlog axis' own coordinates
        c = spread

        def fwd(v: np.ndarray) -> np.ndarray:
            return np.sign(v) * np.log1p(np.abs(v) / c)

        u = np.linspace(fwd(np.array(lo)), fwd(np.array(hi)), 61)
        bins = np.sign(u) * c * np.expm1(np.abs(u))
    else:
        bins = np.linspace(lo, hi, 61)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for mask, name, colour in ((~labels, "normal", "tab:blue"),
                               (labels, "anomalous", "tab:orange")):
        group = np.clip(scores[mask], bins[0], bins[-1])
        ax.hist(group, bins=bins.tolist(), weights=np.full(group.size, 1 / group.size), alpha=0.6,
                color=colour, label=f"{name} ({group.size})")
    for (name, t), style in zip(marks, (("red", "-"), ("darkorange", "--")), strict=False):
        ax.axvline(t.threshold, color=style[0], ls=style[1], lw=1.5,
                   label=f"{name} threshold {t.threshold:.2f}")
    if symlog:
        ax.set_xscale("symlog", linthresh=c)
    ax.set_xlim(bins[0], bins[-1])
    ax.set_xlabel("anomaly score (nats)" + (", symmetric-log axis" if symlog else ""))
    ax.set_ylabel("share of its group")
    ax.set_title("Scores by label")
    ax.legend(fontsize=8)
    return _png(fig)
