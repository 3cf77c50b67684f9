"""``anomaly evaluate BUNDLE INPUT``: metrics and figures on labelled data."""

from __future__ import annotations

import argparse
from typing import Any

from anomaly.errors import InputError
from anomaly.evaluation import check_report_path, evaluate_path, write_report
from anomaly.evaluation.report import DEFAULT_TOP


def run(args: argparse.Namespace) -> int:
    if args.report:
        check_report_path(args.report)  # before any scoring
    if args.top < 0:
        raise InputError(f"--top must be 0 or more, got {args.top}")
    report = evaluate_path(
        args.bundle, args.input, label_column=args.label_column, out_dir=args.out_dir,
        mc_samples=args.mc_samples, seed=args.seed, progress=not args.quiet,
        normal_labels=tuple(args.normal_label or ()))
    print(report.describe())
    if args.report:
        page = write_report(args.bundle, args.input, report, args.report, top=args.top,
                            seed=args.seed, mc_samples=args.mc_samples)
        print(f"wrote the report to {page.path} (open it in a browser)")
    return 0


def register(commands: Any) -> None:
    p = commands.add_parser("evaluate", help="AUROC, AUPRC, F1 and plots on labelled data")
    p.add_argument("bundle")
    p.add_argument("input", help="CSV/Parquet with a label column, or an image folder whose "
                                 "first-level subfolders are 'normal'/'good' (label 0) or "
                                 "anything else (label 1)")
    p.add_argument("--label-column", default=None,
                   help="column holding 1 for anomalies, 0 for normal rows (or true/false, "
                        "anomaly/normal, outlier/inlier)")
    p.add_argument("--normal-label", action="append", metavar="VALUE",
                   help="a label value of normal rows, such as 2 or normal. (repeatable); "
                        "every other value counts as an anomaly")
    p.add_argument("--out-dir", default=None,
                   help="where to write scores.csv, metrics.json and PNGs (default "
                        "./evaluation-<name>)")
    p.add_argument("--report", default=None, metavar="FILE.html",
                   help="also write one self-contained HTML page: curves, histogram, "
                        "metrics, the top anomalies with heat maps or top columns, the bundle")
    p.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="K",
                   help=f"top anomalies shown in the report (default {DEFAULT_TOP})")
    p.add_argument("--mc-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
