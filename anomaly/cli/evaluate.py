"""``anomaly evaluate BUNDLE INPUT``: metrics and figures on labelled data."""

from __future__ import annotations

import argparse
from typing import Any

from anomaly.evaluation import evaluate_path


def run(args: argparse.Namespace) -> int:
    report = evaluate_path(
        args.bundle, args.input, label_column=args.label_column, out_dir=args.out_dir,
        mc_samples=args.mc_samples, seed=args.seed, progress=not args.quiet)
    print(report.describe())
    return 0


def register(commands: Any) -> None:
    p = commands.add_parser("evaluate", help="AUROC, AUPRC, F1 and plots on labelled data")
    p.add_argument("bundle")
    p.add_argument("input", help="CSV/Parquet with a label column, or an image folder whose "
                                 "first-level subfolders are 'normal'/'good' (label 0) or "
                                 "anything else (label 1)")
    p.add_argument("--label-column", default=None,
                   help="column holding 1 for anomalies, 0 for normal rows")
    p.add_argument("--out-dir", default=None,
                   help="where to write scores.csv, metrics.json and PNGs (default "
                        "./evaluation-<name>)")
    p.add_argument("--mc-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
