"""Fewer latent draws for the same answer: the score's Monte Carlo error, AUROC and test FPR
for L = 2..32, iid noise against antithetic pairs and scrambled Sobol points.

    python benchmarks/mc_noise.py [--data ../shared/data] [--seeds 8] [--quick]

Two data sets, one bundle each, trained once with the product defaults (iid noise; the noise
method only changes how a bundle is *scored*):

* ``mnist``: MNIST digit 7 held out as the anomaly, the image defaults with an MLP
  (784-512-256-8, likelihood ratio against the local reference) on 12,000 training images
  of the other digits, 8 epochs; test: 3,000 test-split images (about 10% sevens);
* ``satellite``: the ODDS satellite table (36 numeric columns, 32% outliers), the tabular
  defaults on 70% of the normal rows; test: the other normal rows and every outlier.

For each method and L, the test set and the bundle's held-out normal rows are scored under
``--seeds`` independent noise seeds. Per seed the threshold is recalibrated on the held-out
scores for the bundle's target FPR (the product's quantile rule), so FPR is the test FPR a
bundle trained with that method and L would give. Reported: ``se_spread``, the median over
test rows of the standard deviation of a row's score over seeds (the true Monte Carlo
error); ``se_reported``, the median of the Scorer's per-score SE (root-mean-square over
seeds); AUROC and test FPR, mean over seeds. Writes benchmarks/results/mc_noise.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scoring import finish_run, start_run, write_result  # noqa: E402

from anomaly.calibration.metrics import auroc  # noqa: E402
from anomaly.calibration.threshold import threshold_for_fpr  # noqa: E402
from anomaly.inference import NOISE_METHODS, Scorer  # noqa: E402

LS = (2, 3, 4, 5, 8, 10, 16, 32)


@dataclass
class Case:
    """A trained bundle with its held-out normal rows and a labelled test set."""

    name: str
    bundle: Path
    x_hold: np.ndarray  # (N_hold, D) preprocessed, the rows the threshold was calibrated on
    x_test: np.ndarray  # (N_test, D)
    y_test: np.ndarray  # (N_test,) bool, True = anomaly
    report: Any = None  # training.pipeline.TrainReport: the fitted model


def calibration_rows(n: int, config: Any) -> np.ndarray:
    """The rows the pipeline held out for calibration: never fitted on or used to stop."""
    from training.splits import plan_splits

    plan = plan_splits(n, config.holdout_fraction, config.target_fpr, config.seed)
    assert plan.method == "holdout", "these cases are large enough for a held-out split"
    return plan.cal


def mnist_case(data: Path, work: Path, quick: bool, architecture: str = "mlp") -> Case:
    from anomaly.bundle import ImageInput
    from training.mnist import load_mnist
    from training.pipeline import image_config, train_images

    images, labels = load_mnist(data / "mnist", "train")
    test_images, test_labels = load_mnist(data / "mnist", "test")
    rng = np.random.default_rng(0)
    normal = np.flatnonzero(labels != 7)
    normal = rng.choice(normal, 3000 if quick else 12000, replace=False)
    x = (images[normal, None] / 255.0).astype(np.float32)  # (N, 1, 28, 28)
    schema = ImageInput(height=28, width=28, channels=1)
    config = image_config(schema, architecture=architecture, hidden=(512, 256),
                          epochs=2 if quick else 8, kl_warmup_epochs=2, progress=False,
                          target_fpr=0.05)
    name = "mnist" if architecture == "mlp" else f"mnist_{architecture}"
    report = train_images(x, schema, work / name, name, config)
    hold = calibration_rows(len(x), config)
    pick = rng.choice(len(test_images), 600 if quick else 3000, replace=False)
    x_test = (test_images[pick] / 255.0).reshape(len(pick), -1).astype(np.float32)
    return Case(name, report.path, x.reshape(len(x), -1)[hold], x_test,
                test_labels[pick] == 7, report)


def satellite_case(data: Path, work: Path, quick: bool) -> Case:
    import scipy.io

    from training.pipeline import tabular_config, train_tabular

    mat = scipy.io.loadmat(data / "odds" / "satellite.mat")
    X, y = mat["X"].astype(np.float64), mat["y"].ravel().astype(bool)
    rng = np.random.default_rng(0)
    normal = rng.permutation(np.flatnonzero(~y))
    n_train = int(0.7 * normal.size)
    train_rows, test_rows = normal[:n_train], np.concatenate([normal[n_train:],
                                                             np.flatnonzero(y)])
    cols = {f"x{j}": X[train_rows, j] for j in range(X.shape[1])}
    config = tabular_config(progress=False, target_fpr=0.05, epochs=20 if quick else 200)
    report = train_tabular(cols, work / "satellite", "satellite", config)
    prep = Scorer(report.path).tabular
    hold = calibration_rows(n_train, config)
    x_hold = prep.transform({k: v[hold] for k, v in cols.items()}).x
    x_test = prep.transform({f"x{j}": X[test_rows, j] for j in range(X.shape[1])}).x
    return Case("satellite", report.path, x_hold, x_test, y[test_rows], report)


def measure(case: Case, seeds: int, ls: tuple[int, ...]) -> list[dict[str, Any]]:
    scorer = Scorer(case.bundle, providers=["CPUExecutionProvider"])
    target = scorer.manifest.threshold.target_fpr
    rows = []
    for method in NOISE_METHODS:
        for L in ls:
            test, hold, se = [], [], []
            for s in range(seeds):
                t = scorer.score(case.x_test, seeds=1000 + s, mc_samples=L, noise=method)
                h = scorer.score(case.x_hold, seeds=1000 + s, mc_samples=L, noise=method)
                test.append(t.scores)
                hold.append(h.scores)
                assert t.score_se is not None
                se.append(t.score_se)
            scores = np.stack(test)  # (seeds, N_test)
            ses = np.stack(se)
            fprs, aurocs = [], []
            for s in range(seeds):
                thr = threshold_for_fpr(np.sort(hold[s]), target)
                fprs.append(float(np.mean(scores[s][~case.y_test] > thr)))
                aurocs.append(auroc(scores[s], case.y_test))
            reported = np.sqrt(np.nanmean(ses ** 2, axis=0)) if np.isfinite(ses).any() \
                else np.full(ses.shape[1], np.nan)
            row = {"data": case.name, "method": method, "L": L,
                   "se_spread": float(np.median(scores.std(axis=0, ddof=1))),
                   "se_reported": float(np.nanmedian(reported)) if np.isfinite(
                       reported).any() else None,
                   "auroc": float(np.mean(aurocs)), "auroc_sd": float(np.std(aurocs)),
                   "test_fpr": float(np.mean(fprs)), "target_fpr": target}
            rows.append(row)
            print(f"  {case.name:9s} {method:10s} L={L:2d}  SE spread {row['se_spread']:.4f}  "
                  f"reported {row['se_reported'] or float('nan'):.4f}  AUROC "
                  f"{row['auroc']:.4f}  FPR {row['test_fpr']:.4f}", flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| data | L | " + " | ".join(f"{m} SE (spread / reported)" for m in NOISE_METHODS)
             + " | " + " | ".join(f"{m} AUROC" for m in NOISE_METHODS) + " | "
             + " | ".join(f"{m} test FPR" for m in NOISE_METHODS) + " |",
             "|---" * (2 + 3 * len(NOISE_METHODS)) + "|"]
    by = {(r["data"], r["method"], r["L"]): r for r in rows}
    for data in dict.fromkeys(r["data"] for r in rows):
        for L in sorted({r["L"] for r in rows if r["data"] == data}):
            cells = [by[(data, m, L)] for m in NOISE_METHODS]
            se = [f"{c['se_spread']:.3f} / " + (f"{c['se_reported']:.3f}"
                                                 if c["se_reported"] is not None else "-")
                  for c in cells]
            lines.append(f"| {data} | {L} | " + " | ".join(se) + " | "
                         + " | ".join(f"{c['auroc']:.4f}" for c in cells) + " | "
                         + " | ".join(f"{c['test_fpr']:.4f}" for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="small data, L in 2, 4, 10")
    parser.add_argument("--out", type=Path, default=HERE / "results/mc_noise.json")
    args = parser.parse_args()
    run = start_run()
    ls = (2, 4, 10) if args.quick else LS
    with tempfile.TemporaryDirectory(prefix="mc-noise-") as tmp:
        cases = [mnist_case(args.data, Path(tmp), args.quick),
                 satellite_case(args.data, Path(tmp), args.quick)]
        rows = [r for case in cases for r in measure(case, args.seeds, ls)]
    result = {**finish_run(run), "seeds": args.seeds, "rows": rows}
    write_result(args.out, result, table(rows))


if __name__ == "__main__":
    main()
