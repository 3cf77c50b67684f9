"""Would an ensemble of independently seeded bundles score ODDS tables better than one?

    python benchmarks/odds_ensemble.py --data ../shared/data/odds [--tables cardio glass]
                                       [--members 5] [--seeds 0 1 2] [--jobs 2]

For each table and split seed (the 60/40 split of ``benchmarks/odds.py``), ``--members``
bundles are trained on the same normal rows with the product defaults, differing only in
their seed (``seed * 100 + member``: weight initialisation, batch order, the split between
fitting, early stopping and calibration). Their test scores are combined two ways: the *mean*
score (a geometric mean of the members' likelihoods) and the *mixture* (-log of the mean
likelihood, a uniform mixture of the members' decoders). Reported per table: the mean AUROC of
a single member and the AUROC of each combination over the first 3 and all members. Writes
``results/odds_ensemble.json.gz`` (every member's test scores, 6 significant digits) after
every bundle; exits 0 with a
message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from anomaly.calibration import auroc  # noqa: E402


def train_member(task: tuple[str, str, int, int]) -> dict[str, Any]:
    """One bundle's test scores (a worker process, one torch thread)."""
    data, table, seed, member = task
    import torch

    torch.set_num_threads(1)
    import odds

    from anomaly.inference import Scorer
    from training.pipeline import tabular_config, train_tabular

    x, y = odds.load_table(Path(data), table)
    x_train, x_test, y_test = odds.split(x, y, seed)
    started = time.perf_counter()
    config = tabular_config(seed=seed * 100 + member, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        report = train_tabular(odds.as_columns(x_train), Path(tmp) / "bundle", table, config)
        scores = Scorer(report.path).score_rows(odds.as_columns(x_test)).scores
    return {"table": table, "seed": seed, "member": member,
            "scores": [float(f"{v:.6g}") for v in np.asarray(scores, dtype=float)],
            "y": np.asarray(y_test).astype(int).tolist(),
            "seconds": round(time.perf_counter() - started, 2)}


def save(results: list[dict[str, Any]], path: Path) -> None:
    path.write_bytes(gzip.compress(json.dumps(results, separators=(",", ":")).encode()))


def load(path: Path) -> list[dict[str, Any]]:
    return json.loads(gzip.decompress(path.read_bytes()))


def combine(scores: np.ndarray, how: str) -> np.ndarray:
    """scores (M, N) -> (N,): the mean score, or -log of the mean likelihood exp(-score)."""
    if how == "mean":
        return scores.mean(axis=0)
    return -(logsumexp(-scores, axis=0) - np.log(scores.shape[0]))


def summarise(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per table: single-member mean AUROC and each combination's, averaged over seeds."""
    runs: dict[tuple[str, int], dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in results:
        runs[(r["table"], r["seed"])][r["member"]] = r
    cells: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (table, _), members in sorted(runs.items()):
        y = np.asarray(members[min(members)]["y"])
        s = np.array([members[m]["scores"] for m in sorted(members)])  # (M, N)
        c = cells[table]
        c["single"].append(float(np.mean([auroc(row, y) for row in s])))
        for how in ("mean", "mixture"):
            c[f"{how} of 3"].append(auroc(combine(s[:3], how), y))
            c[f"{how} of all"].append(auroc(combine(s, how), y))
    return {t: {k: float(np.mean(v)) for k, v in c.items()} for t, c in cells.items()}


def print_table(summary: dict[str, dict[str, float]]) -> None:
    cols = ["single", "mean of 3", "mean of all", "mixture of 3", "mixture of all"]
    print("| table | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for t, row in summary.items():
        print(f"| {t} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    means = {c: np.mean([row[c] for row in summary.values()]) for c in cols}
    print("| **mean** | " + " | ".join(f"{means[c]:.4f}" for c in cols) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/odds")
    p.add_argument("--tables", nargs="+", default=["arrhythmia", "cardio", "glass", "lympho",
                                                   "pima", "wbc"])
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "results/odds_ensemble.json.gz")
    p.add_argument("--summarise", action="store_true",
                   help="only summarise the results already in --out")
    args = p.parse_args(argv)
    results: list[dict[str, Any]] = []
    if not args.summarise:
        if not args.data.is_dir():
            print(f"no ODDS data at {args.data}: skipped")
            return 0
        tasks = [(str(args.data), t, s, m) for t in args.tables for s in args.seeds
                 for m in range(args.members)]
        with ProcessPoolExecutor(args.jobs) as pool:
            for r in pool.map(train_member, tasks):
                results.append(r)
                print(r["table"], r["seed"], r["member"], f"{r['seconds']:.1f} s", flush=True)
                save(results, args.out)
    else:
        results = load(args.out)
    print_table(summarise(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
