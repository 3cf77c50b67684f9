"""``anomaly train`` and ``anomaly demo``: registered into the ``anomaly`` command through the
``anomaly.commands`` entry point. torch is imported only when one of them runs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from exc
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


#: CLI flag -> TrainConfig field; flags left unset keep the (tabular or image) defaults.
CONFIG_FLAGS: dict[str, tuple[str, Any, str]] = {
    "latent_dim": ("--latent-dim", int, "latent size d_z"),
    "hidden": ("--hidden", _int_tuple, "MLP hidden sizes, e.g. 128,64"),
    "architecture": ("--architecture", str,
                     "mlp or conv (images; conv needs height and width divisible by 4)"),
    "likelihood": ("--likelihood", str, "image decoder: bernoulli or gaussian"),
    "var_floor": ("--var-floor", float, "minimum decoder variance (Gaussian)"),
    "epochs": ("--epochs", int, "maximum epochs"),
    "batch_size": ("--batch-size", int, "minibatch size"),
    "lr": ("--lr", float, "Adam learning rate"),
    "beta": ("--beta", float, "KL weight after warm-up"),
    "kl_warmup_epochs": ("--kl-warmup", int, "epochs of linear KL warm-up"),
    "patience": ("--patience", int, "early-stopping patience in epochs"),
    "holdout_fraction": ("--holdout", float, "share of normal data held out for early "
                                             "stopping and threshold calibration"),
    "mc_samples": ("--mc-samples", int, "default latent samples L when scoring"),
    "target_fpr": ("--target-fpr", float, "false-positive rate the threshold is set for"),
    "seed": ("--seed", int, "random seed"),
    "device": ("--device", str, "auto, cpu or cuda"),
    "reference": ("--reference", str, "images: 'local' (default) scores by the likelihood "
                                      "ratio against a local-smoothness model; 'none' by plain "
                                      "reconstruction probability"),
}


def _train(args: argparse.Namespace) -> int:
    from anomaly.errors import InputError
    from anomaly.tables import read_table, table_columns
    from training.datasets import load_image_folder
    from training.pipeline import image_config, tabular_config, train_images, train_tabular

    overrides = {field: getattr(args, field) for field in CONFIG_FLAGS
                 if getattr(args, field) is not None}
    overrides["progress"] = not args.quiet
    source = Path(args.input)
    name = args.name or Path(args.out).name
    started = time.perf_counter()
    if source.is_dir():
        images, schema = load_image_folder(source, args.image_size, args.channels,
                                           progress=not args.quiet)
        config = image_config(schema, **overrides)
        report = train_images(images, schema, args.out, name, config)
    elif source.is_file():
        if args.image_size or args.channels:
            raise InputError("--image-size/--channels are for image folders, not tables")
        config = tabular_config(**overrides)
        report = train_tabular(table_columns(read_table(source)), args.out, name, config,
                               categorical=args.categorical or (), exclude=args.exclude or ())
    else:
        raise InputError(f"no such file or folder: {source}")
    m = report.manifest
    t = m.threshold
    print(f"trained '{m.name}' ({m.kind}, {m.model.architecture}, {m.model.likelihood}) on "
          f"{m.training.rows_train} rows in {time.perf_counter() - started:.1f}s: best epoch "
          f"{m.training.best_epoch}/{m.training.epochs}, validation ELBO "
          f"{m.training.val_elbo:.3f} nats")
    print(f"threshold {t.value:.4f} for target FPR {t.target_fpr:g} (observed "
          f"{t.fpr_estimate:.4f}, 95% CI {t.fpr_ci[0]:.4f}-{t.fpr_ci[1]:.4f} on "
          f"{t.calibration_size} held-out normal rows)")
    print(f"bundle written to {report.path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
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
    for field, (flag, kind, text) in CONFIG_FLAGS.items():
        p.add_argument(flag, dest=field, type=kind, default=None, help=text)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)

    p = commands.add_parser("demo", help="train and evaluate on embedded demo data")
    p.add_argument("--out", default="demo-output", help="where bundles and PNGs go")
    p.add_argument("--quick", action="store_true", help="fewer epochs (for smoke tests)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_demo)
