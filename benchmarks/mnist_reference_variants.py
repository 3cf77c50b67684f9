"""Which reference model to divide the reconstruction probability by: MNIST leave-one-digit-out.

    python benchmarks/mnist_reference_variants.py --digits 1 9 7 3 --max-train 20000

Trains the benchmark's VAE (``mnist_leave_one_out.BENCH_SETTINGS``, no reference) once per digit,
scores the test set through its bundle, then adds log p_ref(x) for several reference models, all
fitted on the normal training split only, and reports the AUROC of each score:

* ``indep_F``: every pixel an independent Gaussian (mean and variance of the normal images, the
  variance floored at F);
* ``png``: the PNG-compressed size in nats (Serra et al., 2020, input complexity);
* ``local_K``: each pixel predicted linearly from K causal neighbours (4: left, up, up-left,
  up-right; 8 and 12 add the next ring), Gaussian residual floored at the VAE's variance floor
  (``local_4`` is what image bundles ship, :mod:`training.reference`);
* ``latent_maha``: Mahalanobis distance of mu(x) to the normal training codes (no reference).

Writes benchmarks/results/mnist_reference_variants{suffix}.json.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mnist_leave_one_out import BENCH_SETTINGS, SCHEMA  # noqa: E402

from anomaly.calibration.metrics import auroc  # noqa: E402
from anomaly.inference import Scorer  # noqa: E402
from training.mnist import load_mnist  # noqa: E402
from training.pipeline import image_config, train_images  # noqa: E402
from training.splits import plan_splits  # noqa: E402

RING = {4: [(0, -1), (-1, 0), (-1, -1), (-1, 1)]}
RING[8] = RING[4] + [(0, -2), (-2, 0), (-2, -1), (-2, 1)]
RING[12] = RING[8] + [(-1, -2), (-1, 2), (-2, -2), (-2, 2)]


def gauss(x: np.ndarray, mean: np.ndarray | float, var: np.ndarray | float) -> np.ndarray:
    return -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)


def neighbours(x: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
    """(N, 784) -> (N, 784, K) causal neighbour values, zero outside the image."""
    im = np.pad(x.reshape(-1, 28, 28), ((0, 0), (2, 2), (2, 2)))
    return np.stack([im[:, 2 + dy:30 + dy, 2 + dx:30 + dx] for dy, dx in offsets],
                    -1).reshape(len(x), 784, len(offsets))


def local_loglik(x_tr: np.ndarray, x: np.ndarray, k: int, floor: float) -> np.ndarray:
    """Sum over pixels of log p_ref under the K-neighbour linear predictor: (N,)."""
    a = neighbours(x_tr, RING[k]).reshape(-1, k)
    a = np.concatenate([a, np.ones((len(a), 1), np.float32)], 1)
    w = np.linalg.lstsq(a.T @ a, a.T @ x_tr.reshape(-1), rcond=None)[0]
    var = max(float(((a @ w - x_tr.reshape(-1)) ** 2).mean()), floor)
    pred = neighbours(x, RING[k]) @ w[:k] + w[k]
    return gauss(x, pred, var).sum(1)


def png_nats(x: np.ndarray) -> np.ndarray:
    out = np.empty(len(x))
    for i, im in enumerate(x):
        buf = io.BytesIO()
        Image.fromarray((im.reshape(28, 28) * 255).round().astype(np.uint8)).save(
            buf, format="PNG", optimize=True)
        out[i] = len(buf.getvalue()) * 8 * np.log(2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/mnist")
    p.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--max-train", type=int, default=20000)
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--suffix", default="")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    config = image_config(SCHEMA, **{**BENCH_SETTINGS, "reference": "none"})
    train_x, train_y = load_mnist(args.data, "train")
    test_x, test_y = load_mnist(args.data, "test")
    train_x = (train_x.reshape(-1, 784) / 255.0).astype(np.float32)
    test_x = (test_x.reshape(-1, 784) / 255.0).astype(np.float32)
    test_png = png_nats(test_x)
    rows: dict[int, dict[str, float]] = {}
    for digit in args.digits:
        started = time.perf_counter()
        normal = train_x[train_y != digit]
        if args.max_train:
            normal = normal[np.random.default_rng(digit).permutation(len(normal))
                            [: args.max_train]]
        labels = (test_y == digit).astype(np.int64)
        x_tr = normal[plan_splits(len(normal), config.holdout_fraction, config.target_fpr,
                                  config.seed).train]
        with tempfile.TemporaryDirectory() as tmp:
            report = train_images(normal.reshape(-1, 1, 28, 28), SCHEMA, tmp, "v", config)
            score = Scorer(report.path).score(test_x).scores.astype(np.float64)  # -log RP
        out = {"recprob": auroc(score, labels)}
        for floor in (0.03, 0.1, 0.2):
            var = np.maximum(x_tr.var(0), floor)
            out[f"indep_{floor:g}"] = auroc(score + gauss(test_x, x_tr.mean(0), var).sum(1),
                                            labels)
        out["png"] = auroc(score - test_png, labels)
        for k in RING:
            out[f"local_{k}"] = auroc(score + local_loglik(x_tr, test_x, k, config.var_floor),
                                      labels)
        model = report.fit.model.eval()
        with torch.no_grad():
            mu_tr = model.encoder(torch.as_tensor(x_tr))[0].numpy()
            mu_te = model.encoder(torch.as_tensor(test_x))[0].numpy()
        diff = mu_te - mu_tr.mean(0)
        out["latent_maha"] = auroc(np.einsum("bi,ij,bj->b", diff, np.linalg.inv(np.cov(mu_tr.T)),
                                             diff), labels)
        rows[digit] = out
        print(f"digit {digit}: " + "  ".join(f"{k} {v:.3f}" for k, v in out.items())
              + f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))}
    print("mean:    " + "  ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"mnist_reference_variants{args.suffix}.json").write_text(json.dumps(
        {"command": " ".join(sys.argv), "max_train": args.max_train, "auroc": rows,
         "mean": mean}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
