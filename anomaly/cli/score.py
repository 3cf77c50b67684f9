"""``anomaly score BUNDLE INPUT --out OUT``: batch scoring; every flag but ``--quiet`` is a
field of :class:`~anomaly.batch.ScoreOptions`."""

from __future__ import annotations

import argparse
from typing import Any

from anomaly.batch import ScoreOptions, score_path
from anomaly.cli.flags import add_arguments, dataclass_settings, given

SETTINGS = dataclass_settings(ScoreOptions)


def run(args: argparse.Namespace) -> int:
    options = ScoreOptions(**given(args, SETTINGS), progress=not args.quiet)
    print(score_path(args.bundle, args.input, args.out, options).describe())
    return 0


def register(commands: Any) -> None:
    p = commands.add_parser(
        "score", help="score CSV/Parquet files or an image folder (streaming, resumable)",
        description="Score a CSV or Parquet file, a glob of them ('data/*.csv', quoted), or a "
                    "folder of images (recursive), chunk by chunk in bounded memory. Rows that "
                    "cannot be scored go to OUT-stem.rejects.csv with the reason.")
    p.add_argument("bundle", help="model bundle directory")
    p.add_argument("input", help="CSV or Parquet file, a glob of them, or a folder of images")
    p.add_argument("--out", required=True, help="output file (.csv or .parquet)")
    add_arguments(p, SETTINGS)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
