"""Would another score from the same trained bundle rank ODDS anomalies better than the shipped
one (-log reconstruction probability + KL)?

    python benchmarks/odds_score_variants.py --data ../shared/data/odds [--tables cardio glass]
                                             [--seeds 0 1 2] [--jobs 2]

For each table and split seed (the 60/40 split of ``benchmarks/odds.py``), one bundle is
trained on the normal rows with the product defaults, and the bundle's full graph
(``Scorer.score(x, explain=True)``: per-feature scores and the reconstruction, L draws) is run
on the training rows and the test rows. Scores compared, all from that one model and all
"higher = more anomalous", every statistic they need taken from the *training* rows only:

* ``shipped``: the bundle's score;
* ``fixvar``: squared residual to the reconstruction, each feature divided by its mean over the
  training rows (a fixed-variance Gaussian in place of the decoder's learned variance);
* ``mse``: the plain squared residual;
* ``fs_z``: the per-feature scores standardised by their training mean and sd, summed;
* ``fs_zmax``: the same, the largest feature only;
* ``mix``: the sum of the training-rank (empirical CDF) of ``shipped`` and of ``fixvar``.

Prints the mean test AUROC per table and score, writes ``results/odds_score_variants.json``;
exits 0 with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from anomaly.calibration import auroc  # noqa: E402

VARIANTS = ("shipped", "fixvar", "mse", "fs_z", "fs_zmax", "mix")


def _cdf(train: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Empirical CDF of ``train`` at ``values``, in [0, 1]."""
    return np.searchsorted(np.sort(train), values) / len(train)


def variant_scores(x_train: np.ndarray, x_test: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Every variant's test scores (B_test,) from one bundle trained on ``x_train``."""
    import odds

    from anomaly.inference import Scorer
    from training.pipeline import tabular_config, train_tabular

    with tempfile.TemporaryDirectory() as tmp:
        report = train_tabular(odds.as_columns(x_train), Path(tmp) / "bundle", "odds",
                               tabular_config(seed=seed, progress=False))
        scorer = Scorer(report.path)
        p_train = scorer.tabular.transform(odds.as_columns(x_train)).x  # (N, D)
        p_test = scorer.tabular.transform(odds.as_columns(x_test)).x  # (B, D)
        train = scorer.score(p_train, explain=True)
        test = scorer.score(p_test, explain=True)
    res_train = (p_train - train.reconstruction) ** 2  # (N, D)
    res_test = (p_test - test.reconstruction) ** 2  # (B, D)
    var = res_train.mean(0) + 1e-6  # (D,)
    fs_mean, fs_sd = train.feature_scores.mean(0), train.feature_scores.std(0) + 1e-6
    z_test = (test.feature_scores - fs_mean) / fs_sd  # (B, D)
    fixvar_train, fixvar_test = (res_train / var).sum(1), (res_test / var).sum(1)
    return {
        "shipped": test.scores,
        "fixvar": fixvar_test,
        "mse": res_test.sum(1),
        "fs_z": z_test.sum(1),
        "fs_zmax": z_test.max(1),
        "mix": _cdf(train.scores, test.scores) + _cdf(fixvar_train, fixvar_test),
    }


def run_task(task: tuple[str, str, int]) -> dict[str, Any]:
    """One (table, seed): each variant's test AUROC (a worker process, one torch thread)."""
    data, table, seed = task
    import torch

    torch.set_num_threads(1)
    import odds

    x, y = odds.load_table(Path(data), table)
    x_train, x_test, y_test = odds.split(x, y, seed)
    started = time.perf_counter()
    scores = variant_scores(x_train, x_test, seed)
    return {"table": table, "seed": seed, "seconds": round(time.perf_counter() - started, 1),
            "auroc": {k: round(float(auroc(s, y_test)), 4) for k, s in scores.items()}}


def main(argv: list[str] | None = None) -> int:
    import odds

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/odds")
    p.add_argument("--tables", nargs="+", default=list(odds.TABLES), choices=odds.TABLES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "results/odds_score_variants.json")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        print(f"no ODDS data at {args.data}: skipped")
        return 0
    tasks = [(str(args.data), t, s) for t in args.tables for s in args.seeds]
    runs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        for run in pool.map(run_task, tasks):
            runs.append(run)
            print(run["table"], run["seed"], run["auroc"], flush=True)
    means = {t: {v: float(np.mean([r["auroc"][v] for r in runs if r["table"] == t]))
                 for v in VARIANTS} for t in args.tables}
    overall = {v: float(np.mean([means[t][v] for t in args.tables])) for v in VARIANTS}
    print(f"\n{'table':12}" + "".join(f"{v:>9}" for v in VARIANTS))
    for t in args.tables:
        print(f"{t:12}" + "".join(f"{means[t][v]:>9.3f}" for v in VARIANTS))
    print(f"{'mean':12}" + "".join(f"{overall[v]:>9.3f}" for v in VARIANTS))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                    "cpu": odds.cpu_model(), "seeds": args.seeds,
                                    "mean_auroc": means, "overall": overall, "runs": runs},
                                   indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
