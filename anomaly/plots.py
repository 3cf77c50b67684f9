"""PNG figures people would rather look at than read. Each function returns PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from PIL import Image


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def training_curve(history: Sequence[dict[str, float]], best_epoch: int) -> bytes:
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [-h["train_loss"] for h in history], label="train ELBO (beta-weighted)")
    ax.plot(epochs, [h["val_elbo"] for h in history], label="validation ELBO")
    ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"kept: epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO per sample (nats)")
    ax.legend(fontsize=8)
    ax.set_title("Training curve")
    return _png(fig)


def score_histogram(normal: np.ndarray, threshold: float, anomalous: np.ndarray | None = None,
                    title: str = "Calibration scores (held-out normal data)") -> bytes:
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
    panels = 3 if reconstruction is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(2.4 * panels, 2.6))

    def show(ax: plt.Axes, arr: np.ndarray) -> None:
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
    lo, hi = float(heat.min()), float(heat.max())
    norm = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    rgba = (plt.get_cmap("inferno")(norm) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(buf, format="PNG")
    return buf.getvalue()
