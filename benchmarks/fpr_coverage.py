"""Does the calibrated threshold keep its promise on tables it has never seen?

For each table and each of ``--splits`` seeded splits: the normal rows are divided 60/40
(``--train-fraction``), a bundle is trained (through ``training.train_tabular``, product
defaults but ``--target-fpr`` and an ``--epochs`` cap; the cap changes the model, not which
rows are exchangeable) on the 60%, and the 40% measure the test FPR at the bundle's threshold.
Reported per table: the mean test FPR beside the target, how often the measured FPR fell inside
the 95% interval the product predicts for that many normal rows (``observed_fpr_interval``: the
Beta law of the threshold's FPR plus the test set's binomial noise), and the calibration method
used.

    python benchmarks/fpr_coverage.py --data ../shared/data/odds            # table + JSON

Tables: sklearn's breast cancer (always there) and the ODDS tables found under ``--data``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

ODDS = ("glass", "wbc", "lympho", "pima", "cardio", "thyroid")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def normal_rows(name: str, data: Path) -> np.ndarray:
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        d = load_breast_cancer()
        return np.asarray(d.data[d.target == 1], dtype=np.float64)  # benign
    from scipy.io import loadmat

    mat = loadmat(data / f"{name}.mat")
    x, y = np.asarray(mat["X"], dtype=np.float64), np.asarray(mat["y"]).ravel()
    return x[y == 0]


def one_split(x: np.ndarray, seed: int, target: float, epochs: int,
              train_fraction: float = 0.6, *, latent_codes: int) -> dict[str, Any]:
    from anomaly.calibration.threshold import observed_fpr_interval
    from anomaly.inference import Scorer
    from training import tabular_config, train_tabular

    perm = np.random.default_rng(seed).permutation(len(x))
    cut = int(train_fraction * len(x))
    train, test = x[perm[:cut]], x[perm[cut:]]
    cols = lambda a: {f"c{j}": a[:, j] for j in range(a.shape[1])}  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        report = train_tabular(cols(train), Path(tmp) / "b", "cov", tabular_config(
            target_fpr=target, epochs=epochs, seed=seed, latent_codes=latent_codes,
            progress=False))
        scores = Scorer(report.path).score_rows(cols(test)).scores
    t = report.manifest.threshold
    fpr = float(np.mean(scores > t.value))
    assert t.rank is not None
    lo, hi = observed_fpr_interval(t.calibration_size, t.rank, len(test))
    return {"seed": seed, "test_fpr": fpr, "interval": [lo, hi], "inside": lo <= fpr <= hi,
            "method": t.method, "calibration_size": t.calibration_size,
            "expected_fpr": t.expected_fpr, "n_test": len(test)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/odds")
    p.add_argument("--tables", nargs="+", default=["breast_cancer", *ODDS])
    p.add_argument("--splits", type=int, default=20)
    p.add_argument("--target-fpr", type=float, default=0.05)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--train-fraction", type=float, default=0.6,
                   help="share of the normal rows trained on (the rest test the FPR)")
    p.add_argument("--latent-codes", type=int, default=None,
                   help="the product's --latent-codes (default: the product's default)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "fpr_coverage.json")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    from training.config import TrainConfig

    latent_codes = (TrainConfig().latent_codes if args.latent_codes is None
                    else args.latent_codes)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    record: dict[str, Any] = {}

    def save() -> None:  # after every table, so a stopped run keeps what it measured
        record.update({"date": datetime.now(UTC).isoformat(timespec="seconds"),
                       "cpu": cpu_model(), "command": " ".join(sys.argv),
                       "target_fpr": args.target_fpr, "splits": args.splits,
                       "train_fraction": args.train_fraction,
                       "epochs": args.epochs, "latent_codes": latent_codes,
                       "seconds": round(time.perf_counter() - started, 1), "tables": results})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")

    for table in args.tables:
        if table != "breast_cancer" and not (args.data / f"{table}.mat").is_file():
            print(f"skip {table}: no {args.data / table}.mat")
            continue
        x = normal_rows(table, args.data)
        runs = [one_split(x, seed, args.target_fpr, args.epochs, args.train_fraction,
                          latent_codes=latent_codes) for seed in range(args.splits)]
        fprs = np.array([r["test_fpr"] for r in runs])
        results[table] = {"n_normal": len(x), "mean_test_fpr": float(fprs.mean()),
                          "coverage": float(np.mean([r["inside"] for r in runs])),
                          "methods": sorted({r["method"] for r in runs}), "runs": runs}
        r = results[table]
        print(f"{table:14s} n={len(x):5d} {'/'.join(r['methods']):9s} mean test FPR "
              f"{r['mean_test_fpr']:.4f} (target {args.target_fpr}) coverage "
              f"{r['coverage']:.2f}", flush=True)
        save()
    save()
    print(f"wrote {args.out} ({record['seconds']} s)")


if __name__ == "__main__":
    main()
