"""Training a large table with the defaults: wall time, epochs, rows seen, and the test AUROC
and FPR of the bundle, at each table size.

    python benchmarks/large_table.py [--rows 400000 1000000] [--suffix _before]

The table (a 4-factor model: 24 correlated numeric columns, four of them log-normal, a
factor-driven 8-level text column and a 6-level integer code) is made in the benchmark; the
test set is 20,000 fresh rows, 1,000 of them anomalies (six columns shifted off the factor
structure by N(0, 1.5^2)). ``train_tabular`` with ``tabular_config()`` trains it, the
bundle's Scorer scores the test rows. To compare two versions of the code, run it from each
checkout (``PYTHONPATH=<checkout> python benchmarks/large_table.py --suffix _before``).
Prints a table and writes benchmarks/results/large_table{suffix}.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scoring import finish_run, start_run  # noqa: E402


def make_table(n: int, seed: int, anomalies: int = 0) -> tuple[dict[str, np.ndarray],
                                                                 np.ndarray]:
    """n rows as {column: values} and (n,) bool labels (True: planted anomaly)."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(4, 24))  # fixed across calls
    noise = np.random.default_rng(98).uniform(0.05, 1.0, size=24)
    z = rng.normal(size=(n, 4))
    x = z @ mixing + rng.normal(size=(n, 24)) * noise
    x[:, :4] = np.exp(x[:, :4] / 3)  # skewed columns
    y = np.zeros(n, dtype=bool)
    if anomalies:
        idx = rng.choice(n, anomalies, replace=False)
        x[idx, 4:10] += rng.normal(size=(anomalies, 6)) * 1.5
        y[idx] = True
    cols: dict[str, np.ndarray] = {f"x{j}": x[:, j] for j in range(24)}
    level = np.floor((z[:, 0] + 3) * 1.3).clip(0, 7).astype(int)
    cols["site"] = np.array(list("abcdefgh"), dtype=object)[level]
    cols["code"] = rng.integers(0, 5, n) + (z[:, 1] > 0)
    return cols, y


def run_size(n: int, root: Path) -> dict[str, Any]:
    from anomaly.calibration import auroc
    from anomaly.inference import Scorer
    from training.pipeline import tabular_config, train_tabular

    cols, _ = make_table(n, seed=0)
    started = time.perf_counter()
    report = train_tabular(cols, root / f"b{n}", "large", tabular_config(progress=False))
    wall = time.perf_counter() - started
    test, y = make_table(20_000, seed=1, anomalies=1_000)
    scores = Scorer(report.path).score_rows(test).scores
    m = report.manifest
    return {"rows": n, "wall_s": round(wall, 1), "best_epoch": m.training.best_epoch,
            "epochs": m.training.epochs, "rows_fitted": m.training.rows_train,
            "val_elbo": round(m.training.val_elbo, 4),
            "auroc": round(auroc(scores, y), 4),
            "test_fpr": round(float((scores[~y] > m.threshold.value).mean()), 4),
            "target_fpr": m.threshold.target_fpr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[400_000, 1_000_000])
    parser.add_argument("--suffix", default="")
    args = parser.parse_args()
    started = start_run()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rows:
            results.append(run_size(n, Path(tmp)))
            r = results[-1]
            print(f"{r['rows']:>9,} rows: {r['wall_s']:7.1f} s, best epoch {r['best_epoch']}/"
                  f"{r['epochs']}, {r['rows_fitted']:,} fitting rows, val ELBO "
                  f"{r['val_elbo']:.3f}, AUROC {r['auroc']:.4f}, test FPR {r['test_fpr']:.4f}"
                  f" (target {r['target_fpr']})", flush=True)
    out = HERE / "results" / f"large_table{args.suffix}.json"
    out.write_text(json.dumps({**finish_run(started), "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
