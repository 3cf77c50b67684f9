"""Anomaly heat maps: a foreign patch pasted into a normal image is where the map is hottest.

Uses the session's ``digits_bundle`` (conv VAE on sklearn's 8x8 digits, trained in the test
session), so it needs no downloaded data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anomaly.inference import Scorer
from anomaly.plots import heatmap_overlay, heatmap_png

PATCH = (slice(5, 8), slice(0, 2))  # 3x2 block in the bottom-left corner, (rows, cols); not
#: symmetric, so a transposed map would miss it


@pytest.fixture(scope="module")
def clean_and_patched() -> tuple[np.ndarray, np.ndarray]:
    """Held-in-class test images (digits other than 7), clean and with a bright patch whose
    corner is dark in nearly every normal digit: (N, 1, 8, 8) each, in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[digits.target != 7][:40] / 16.0).astype(np.float32)[:, None]
    patched = images.copy()
    patched[:, 0, PATCH[0], PATCH[1]] = 1.0
    return images, patched


def _hottest(heat: np.ndarray, k: int) -> np.ndarray:
    """Boolean masks (N, H, W) of each map's k hottest pixels."""
    flat = heat.reshape(heat.shape[0], -1)
    top = np.argsort(-flat, axis=1)[:, :k]
    mask = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(mask, top, True, axis=1)
    return mask.reshape(heat.shape)


def test_hottest_region_overlaps_pasted_patch(
        digits_bundle: Path, clean_and_patched: tuple[np.ndarray, np.ndarray]) -> None:
    clean, patched = clean_and_patched
    scorer = Scorer(digits_bundle)
    res_patched = scorer.score_images(list(patched))
    heat = scorer.heatmaps(res_patched)  # (N, 8, 8) nats per pixel
    assert heat.shape == (len(patched), 8, 8)
    patch = np.zeros((8, 8), dtype=bool)
    patch[PATCH] = True
    k = int(patch.sum())
    overlap = (_hottest(heat, k) & patch).sum(axis=(1, 2))  # (N,) of the k hottest in the patch
    # The single hottest pixel lies in the patch, and most of the k hottest do, for nearly all
    # images; a map that ignored position (or was transposed/shuffled) would not manage this.
    argmax_in_patch = patch.reshape(-1)[heat.reshape(len(heat), -1).argmax(1)]
    assert argmax_in_patch.mean() >= 0.9, argmax_in_patch
    assert np.median(overlap) >= k // 2 + 1, overlap
    # The patch is what raised the score: the same pixels are cool on the clean images.
    heat_clean = scorer.heatmaps(scorer.score_images(list(clean)))
    assert (heat[:, patch].sum(1) > heat_clean[:, patch].sum(1) + 1.0).mean() >= 0.9
    assert (res_patched.scores > scorer.score_images(list(clean)).scores).mean() >= 0.9


def test_overlay_png_shows_input_map_and_reconstruction(
        digits_bundle: Path, clean_and_patched: tuple[np.ndarray, np.ndarray]) -> None:
    _, patched = clean_and_patched
    scorer = Scorer(digits_bundle)
    res = scorer.score_images(list(patched[:2]))
    heat = scorer.heatmaps(res)
    recon = res.reconstruction.reshape(-1, 1, 8, 8)
    png = heatmap_overlay(patched[0], heat[0], recon[0], float(res.scores[0]))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    bare = heatmap_png(heat[0])
    assert bare[:8] == b"\x89PNG\r\n\x1a\n"
