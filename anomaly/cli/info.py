"""``anomaly info BUNDLE``: what a bundle holds, for a person (or ``--json``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from anomaly.bundle import load_bundle
from anomaly.inference import describe_error

SCORE_TEXT = {
    "reconstruction_probability": "-log reconstruction probability (nats)",
    "likelihood_ratio": "-log reconstruction probability + log p_ref(x), the likelihood "
                        "ratio against a local-smoothness reference (nats)",
    "free_energy": "-log reconstruction probability + KL(q(z|x) || p(z)), the latent code's "
                   "atypicality added (nats)",
    "aggregate_free_energy": "-log reconstruction probability + w x (how atypical the latent "
                             "code is among the normal training rows' codes), w matching the "
                             "two terms' spreads (nats of the first)",
}


def run(args: argparse.Namespace) -> int:
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
        f"D={m.model.input_dim}, latent={m.model.latent_dim}, L={m.model.mc_samples} "
        f"({m.model.noise} draws), {m.model.precision}",
        f"score       {SCORE_TEXT[m.model.score]}",
    ]
    if m.input.kind == "tabular":
        cols = ", ".join(f"{c.name}:{'num' if c.type == 'numeric' else 'cat'}"
                         for c in m.input.columns)
        lines.append(f"input       {len(m.input.columns)} columns: {cols}")
    else:
        lines.append(f"input       images {m.input.channels}x{m.input.height}x{m.input.width}, "
                     f"pixels / {m.input.scale:g}")
    lines += [
        f"threshold   {t.value:.4f} for target FPR {t.target_fpr:g} ("
        + (f"expected {t.expected_fpr:.4f}, " if t.expected_fpr is not None else "")
        + f"{t.confidence:.0%} interval {t.fpr_ci[0]:.4f}-{t.fpr_ci[1]:.4f}, "
        f"{t.calibration_size} {t.method} calibration scores)",
        "            " + "  ".join(f"FPR {p.fpr:g}: {p.threshold:.3f}" for p in t.table),
        f"score SE    {describe_error(t.mc_error, t.target_fpr)}",
        f"training    {m.training.rows_train} rows, {m.training.epochs} epochs (best "
        f"{m.training.best_epoch}), val ELBO {m.training.val_elbo:.3f} nats, "
        f"{m.training.duration_s:.1f}s on {m.training.device}",
        f"data        {m.training.data_fingerprint}",
        f"files       {m.files.model} (sha256 {m.files.model_sha256[:12]}...), "
        + (f"{m.files.score_model} (score only), " if m.files.score_model else "")
        + f"{m.files.calibration}, {', '.join(m.files.plots)}",
    ]
    print("\n".join(lines))
    return 0


def register(commands: Any) -> None:
    p = commands.add_parser("info", help="show what a bundle holds")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run)
