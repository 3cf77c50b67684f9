"""``anomaly train`` and ``anomaly demo``: registered into the ``anomaly`` command through the
``anomaly.commands`` entry point. The train flags are the fields of
:class:`~training.config.TrainConfig`; torch is imported only when one of them runs, and its
absence is a one-line install hint."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from anomaly.cli.flags import add_arguments, dataclass_settings, given
from anomaly.errors import InputError, MissingExtraError
from training.config import TrainConfig

SETTINGS = dataclass_settings(TrainConfig)


def _needs_torch(command: str) -> None:
    """A clear install hint instead of an ImportError from deep inside training."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"`anomaly {command}`", "train") from exc


def _names(columns: list[str]) -> str:
    """Column names for a message; a header field left blank (a pandas index, the field
    after a trailing delimiter) is named as such rather than printed as nothing."""
    return ", ".join(c if c.strip() else "(a column with no name)" for c in columns)


def _train(args: argparse.Namespace) -> int:
    overrides = {**given(args, SETTINGS), "progress": not args.quiet}
    TrainConfig(**overrides)  # every flag checked before any data is read
    source = Path(args.input)
    if not source.exists():
        raise InputError(f"no such file or folder: {source}")
    _needs_torch("train")
    from anomaly.batch.sources import read_table, table_columns
    from training.datasets import load_image_folder
    from training.pipeline import image_config, tabular_config, train_images, train_tabular
    from training.tabular import (
        is_identifier,
        is_row_number,
        is_temporal,
        looks_like_label,
        missing_filled,
    )

    name = args.name or Path(args.out).name
    started = time.perf_counter()
    dates: list[str] = []
    numbering: list[str] = []
    labels: list[str] = []
    if source.is_dir():
        images, schema = load_image_folder(source, args.image_size, args.channels,
                                           progress=not args.quiet)
        config = image_config(schema, **overrides)
        report = train_images(images, schema, args.out, name, config)
    elif source.is_file():
        if args.image_size or args.channels:
            raise InputError("--image-size/--channels are for image folders, not tables")
        config = tabular_config(**overrides)
        columns = table_columns(read_table(source))
        dates = [c for c, values in columns.items() if is_temporal(values)]
        numbering = [c for c, values in columns.items()
                     if is_row_number(values, c) or is_identifier(values)]
        report = train_tabular(columns, args.out, name, config,
                               categorical=args.categorical or (), exclude=args.exclude or ())
        labels = [c.name for c in getattr(report.manifest.input, "columns", [])
                  if looks_like_label(c.name, columns[c.name])]
    else:
        raise InputError(f"no such file or folder: {source}")
    m = report.manifest
    t = m.threshold
    print(f"trained '{m.name}' ({m.kind}, {m.model.architecture}, {m.model.likelihood}) on "
          f"{m.training.rows_train} rows in {time.perf_counter() - started:.1f}s: best epoch "
          f"{m.training.best_epoch}/{m.training.epochs}, validation ELBO "
          f"{m.training.val_elbo:.3f} nats")
    print(f"threshold {t.value:.4f} for target FPR {t.target_fpr:g}: expected FPR "
          f"{t.expected_fpr:.4f}, 95% interval {t.fpr_ci[0]:.4f}-{t.fpr_ci[1]:.4f} "
          f"({t.calibration_size} {'out-of-fold' if t.method == 'cross_fit' else 'held-out'} "
          "normal scores)")
    ignored = [c for c in getattr(m.input, "ignored", []) if c not in (args.exclude or ())]
    dated = [c for c in ignored if c in dates]
    numbered = [c for c in ignored if c in numbering and c not in dated]
    left_out = [c for c in ignored if c not in dated and c not in numbered]
    if dated:
        print(f"left out {len(dated)} date/time column(s): {_names(dated)} (the dates of the "
              "normal rows never come back; add what matters in them, such as the hour or "
              "the weekday, as a column)")
    if numbered:
        print(f"left out {len(numbered)} column(s) that number or name the rows (each value "
              f"once; a new row brings a new one): {_names(numbered)}")
    if left_out:
        print(f"left out {len(left_out)} column(s) that are constant, empty or a copy of "
              f"another: {_names(left_out)}")
    filled = missing_filled(m.input)
    if filled:
        print(f"{len(filled)} column(s) have missing values in the normal rows, filled the same "
              f"way when scoring: {', '.join(filled)}")
    print(f"bundle written to {report.path}")
    for col in labels:
        print(f"warning: column '{col}' looks like a label (two values) and was trained on as "
              "a feature: train on normal rows only, with --exclude "
              f"{col}, and give it to evaluate as --label-column {col}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    _needs_torch("demo")
    from training.demo import run_demo

    run_demo(Path(args.out), quick=args.quick, progress=not args.quiet)
    return 0


def register(commands: Any) -> None:
    p = commands.add_parser("train", help="train a VAE bundle on normal data (needs [train])")
    p.add_argument("input", help="CSV/Parquet file of normal rows, or a folder of normal images")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--name", default=None, help="model name (default: the --out folder name)")
    p.add_argument("--image-size", type=int, default=None, help="resize images to NxN")
    p.add_argument("--channels", type=int, default=None, help="1 (grey) or 3 (RGB)")
    p.add_argument("--categorical", action="append", metavar="COLUMN",
                   help="treat a numeric-looking column as categorical (repeatable)")
    p.add_argument("--exclude", action="append", metavar="COLUMN",
                   help="drop a column (ids, labels) from the features (repeatable)")
    add_arguments(p, SETTINGS)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)

    p = commands.add_parser("demo", help="train and evaluate on embedded demo data")
    p.add_argument("--out", default="demo-output", help="where bundles and PNGs go")
    p.add_argument("--quick", action="store_true", help="fewer epochs (for smoke tests)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_demo)
