"""The ``anomaly`` command. Core subcommands (score, evaluate, info) live here; others
(train and demo from ``training``, serve from ``service``) register through the
``anomaly.commands`` entry-point group, so the core never imports torch or the web stack.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from anomaly import evaluate as evaluate_mod
from anomaly.bundle import load_bundle
from anomaly.errors import AnomalyError
from anomaly.scoring import ScoreOptions, score_path


def _cmd_info(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    m = bundle.manifest
    if args.json:
        print(json.dumps(m.model_dump(mode="json", exclude={"training": {"history"}}), indent=2))
        return 0
    t = m.threshold
    lines = [
        f"bundle      {bundle.path}",
        f"name        {m.name} ({m.kind}, schema v{m.schema_version}, created {m.created_at})",
        f"model       {m.model.architecture} VAE, {m.model.likelihood} likelihood, "
        f"D={m.model.input_dim}, latent={m.model.latent_dim}, L={m.model.mc_samples}",
    ]
    if m.model.config.get("score") == "likelihood_ratio":
        lines.append("score       -log reconstruction probability + log p_ref(x), the "
                     "likelihood ratio against a local-smoothness reference (nats)")
    else:
        lines.append("score       -log reconstruction probability (nats)")
    if m.input.kind == "tabular":
        cols = ", ".join(f"{c.name}:{'num' if c.type == 'numeric' else 'cat'}"
                         for c in m.input.columns)
        lines.append(f"input       {len(m.input.columns)} columns: {cols}")
    else:
        lines.append(f"input       images {m.input.channels}x{m.input.height}x{m.input.width}, "
                     f"pixels / {m.input.scale:g}")
    lines += [
        f"threshold   {t.value:.4f} for target FPR {t.target_fpr:g} "
        f"(observed {t.fpr_estimate:.4f}, {t.confidence:.0%} CI {t.fpr_ci[0]:.4f}-"
        f"{t.fpr_ci[1]:.4f}, {t.calibration_size} calibration scores)",
        "            " + "  ".join(f"FPR {p.fpr:g}: {p.threshold:.3f}" for p in t.table),
        f"training    {m.training.rows_train} rows, {m.training.epochs} epochs (best "
        f"{m.training.best_epoch}), val ELBO {m.training.val_elbo:.3f} nats, "
        f"{m.training.duration_s:.1f}s on {m.training.device}",
        f"data        {m.training.data_fingerprint}",
        f"files       {m.files.model} (sha256 {m.files.model_sha256[:12]}...), "
        f"{m.files.calibration}, {', '.join(m.files.plots)}",
    ]
    print("\n".join(lines))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    options = ScoreOptions(
        mc_samples=args.mc_samples, seed=args.seed, explain=args.explain,
        heatmaps=args.heatmaps, id_column=args.id_column, progress=not args.quiet,
        providers=args.providers.split(",") if args.providers else None,
        fail_on_bad=args.fail_on_bad, resume=args.resume, engine=args.engine,
        ray_address=args.ray_address, chunk_rows=args.chunk_rows)
    summary = score_path(args.bundle, args.input, args.out, options)
    print(summary.describe())
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    report = evaluate_mod.evaluate_path(
        args.bundle, args.input, label_column=args.label_column, out_dir=args.out_dir,
        mc_samples=args.mc_samples, seed=args.seed, progress=not args.quiet)
    print(report.describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomaly",
        description="Anomaly detection with VAE reconstruction probability: train on normal "
                    "data, score, evaluate, serve.")
    try:
        version = importlib.metadata.version("vae-anomaly")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        version = "unknown"
    parser.add_argument("--version", action="version", version=f"vae-anomaly {version}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser(
        "score", help="score CSV/Parquet files or an image folder (streaming, resumable)",
        description="Score a CSV or Parquet file, a glob of them ('data/*.csv', quoted), or a "
                    "folder of images (recursive), chunk by chunk in bounded memory. Rows that "
                    "cannot be scored go to OUT-stem.rejects.csv with the reason.")
    p.add_argument("bundle", help="model bundle directory")
    p.add_argument("input", help="CSV or Parquet file, a glob of them, or a folder of images")
    p.add_argument("--out", required=True, help="output file (.csv or .parquet)")
    p.add_argument("--mc-samples", type=int, default=None,
                   help="latent samples L (default: the bundle's)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (same seed, same scores)")
    p.add_argument("--explain", type=int, default=0, metavar="K",
                   help="add the top-K columns by feature score (tabular)")
    p.add_argument("--heatmaps", default=None, metavar="DIR",
                   help="write an anomaly heat-map PNG per image to DIR")
    p.add_argument("--id-column", default=None,
                   help="input column copied to the output to identify rows (default: the "
                        "row number)")
    p.add_argument("--providers", default=None,
                   help="onnxruntime execution providers, comma-separated")
    p.add_argument("--fail-on-bad", action="store_true",
                   help="stop at the first bad row or image instead of writing it to the "
                        "rejects file")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run with the same arguments from its last "
                        "finished chunk")
    p.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                   help="rows (or images) per chunk: the unit of memory and of --resume "
                        "(default 16384 rows, 256 images)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: Ray Data (pip install 'vae-anomaly[ray]')")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to use with --engine ray (default: start a local Ray)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_score)

    p = commands.add_parser("evaluate", help="AUROC, AUPRC, F1 and plots on labelled data")
    p.add_argument("bundle")
    p.add_argument("input", help="CSV/Parquet with a label column, or an image folder whose "
                                 "first-level subfolders are 'normal'/'good' (label 0) or "
                                 "anything else (label 1)")
    p.add_argument("--label-column", default=None,
                   help="column holding 1 for anomalies, 0 for normal rows")
    p.add_argument("--out-dir", default=None,
                   help="where to write metrics.json and PNGs (default ./evaluation-<name>)")
    p.add_argument("--mc-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = commands.add_parser("info", help="show what a bundle holds")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=_cmd_info)

    for entry in importlib.metadata.entry_points(group="anomaly.commands"):
        try:
            entry.load()(commands)
        except ImportError as exc:  # an extra that is not installed: its commands are absent
            logging.getLogger(__name__).debug("command plugin %s unavailable: %s",
                                              entry.name, exc)
        except Exception as exc:  # a broken plugin must not take the core commands down
            logging.getLogger(__name__).warning("command plugin %s failed to load: %s",
                                                entry.name, exc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AnomalyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: say so, keep the trace one env var away
        if os.environ.get("ANOMALY_DEBUG"):
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc} (set ANOMALY_DEBUG=1 for the "
              "traceback and report it)", file=sys.stderr)
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
