"""Scoring levers for the image VAE on MNIST leave-one-digit-out, against the same-arch AE.

    python benchmarks/mnist_score_levers.py --digits 0 3 8 9 1 --jobs 2 \\
        --set architecture=conv beta=0.5 --suffix _conv_beta05 \\
        --ae benchmarks/results/mnist_tuning/mnist_leave_one_out_conv8.json

Trains the benchmark's VAE (``mnist_leave_one_out.BENCH_SETTINGS`` plus ``--set``) once per
digit through the public pipeline and scores the test set through its bundle, then reports the
AUROC of score variants a user could choose from normal data alone:

* ``L<n>``: the shipped likelihood-ratio score with n Monte Carlo samples: the bundle's own
  (16) and each ``--samples`` count;
* ``plain``: -log RP(x) without the reference (the bundle's L);
* ``ref_fit``: -log RP(x) + lambda log p_ref(x), lambda the least-squares slope of -log RP on
  -log p_ref over the *normal* validation images: the share of the normal scores' spread that
  input complexity explains, removed (lambda = 1 is the shipped ratio);
* ``ref_0.5`` / ``ref_0.75``: the same with a fixed reference weight.

``--ae`` reads the same-architecture AE's AUROCs from a ``mnist_leave_one_out`` JSON with the
same splits and prints, per variant, on how many of the digits it beats the AE.
Writes benchmarks/results/mnist_tuning/mnist_score_levers{suffix}.json.
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
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mnist_leave_one_out import (  # noqa: E402
    BENCH_SETTINGS,
    SCHEMA,
    _mnist,
    config_record,
    digit_results,
    overrides,
    reference_loglik,
)

from anomaly.calibration.metrics import auroc  # noqa: E402
from anomaly.inference import Scorer  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.pipeline import image_config, train_images  # noqa: E402
from training.splits import plan_splits  # noqa: E402

WEIGHTS = (0.5, 0.75)  # fixed reference weights, for comparison


def run_digit(digit: int, config: TrainConfig, data: Path, threads: int,
              samples: tuple[int, ...]) -> dict[str, Any]:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    train_x, train_y, test_x, test_y = _mnist(data)
    normal = train_x[train_y != digit]
    labels = (test_y == digit).astype(np.int64)
    val_idx = plan_splits(len(normal), config.holdout_fraction, config.target_fpr,
                          config.seed).cal
    out: dict[str, Any] = {"digit": digit}
    with tempfile.TemporaryDirectory() as tmp:
        report = train_images(normal.reshape(-1, 1, 28, 28), SCHEMA, tmp, "v", config)
        scorer = Scorer(report.path)
        test = {n: scorer.score(test_x, mc_samples=n).scores.astype(np.float64)
                for n in sorted({config.mc_samples, *samples})}
        val = scorer.score(normal[val_idx]).scores.astype(np.float64)
    described = report.manifest.model.config.get("reference")
    auc = {f"L{n}": auroc(s, labels) for n, s in test.items()}
    if described:
        ref_test = reference_loglik(described, test_x)
        ref_val = reference_loglik(described, normal[val_idx])
        # -log RP(x), (N,)
        plain_test, plain_val = test[config.mc_samples] - ref_test, val - ref_val
        # Slope of -log RP on -log p_ref among normal images: lambda.
        lam = float(np.polyfit(-ref_val, plain_val, 1)[0])
        auc["plain"] = auroc(plain_test, labels)
        auc["ref_fit"] = auroc(plain_test + lam * ref_test, labels)
        for w in WEIGHTS:
            auc[f"ref_{w:g}"] = auroc(plain_test + w * ref_test, labels)
        out["lambda"] = lam
    out["auroc"] = auc
    out["best_epoch"], out["epochs_run"] = report.fit.best_epoch, report.fit.epochs_run
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/mnist")
    p.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--samples", type=int, nargs="*", default=[64],
                   help="MC sample counts scored besides the bundle's own")
    p.add_argument("--ae", type=Path, help="mnist_leave_one_out JSON holding the AE's AUROCs")
    p.add_argument("--out", type=Path, default=HERE / "results" / "mnist_tuning")
    p.add_argument("--suffix", default="")
    args = p.parse_args(argv)
    config = image_config(SCHEMA, **{**BENCH_SETTINGS, **overrides(args.set)})
    ae: dict[int, float] = {}
    if args.ae:
        ae = {r["digit"]: r["metrics"]["ae"]["auroc"]
              for r in json.loads(args.ae.read_text())["digits"] if "ae" in r["metrics"]}
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for r in digit_results(run_digit, args.digits, args.jobs, config, args.data, args.threads,
                           tuple(args.samples)):
        rows.append(r)
        _write(args, config, ae, rows, started)
        print(f"digit {r['digit']}: "
              + "  ".join(f"{k} {v:.3f}" for k, v in r["auroc"].items())
              + (f"  AE {ae[r['digit']]:.3f}" if r["digit"] in ae else "")
              + f"  lambda {r.get('lambda', float('nan')):.2f}  ({r['seconds']:.0f} s)",
              flush=True)
    mean, wins = _write(args, config, ae, rows, started)
    print("mean: " + "  ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    if ae:
        print("wins vs AE: " + "  ".join(f"{k} {v}/{len(rows)}" for k, v in wins.items()))
    return 0


def _write(args: argparse.Namespace, config: TrainConfig, ae: dict[int, float],
           rows: list[dict[str, Any]], started: float
           ) -> tuple[dict[str, float], dict[str, int]]:
    """Write the JSON so far (a partial run keeps its digits); return mean AUROC and wins."""
    rows.sort(key=lambda r: r["digit"])
    keys = list(rows[0]["auroc"])
    mean = {k: float(np.mean([r["auroc"][k] for r in rows])) for k in keys}
    wins = {k: sum(r["auroc"][k] > ae[r["digit"]] for r in rows if r["digit"] in ae)
            for k in keys}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"mnist_score_levers{args.suffix}.json").write_text(json.dumps(
        {"command": " ".join(sys.argv), "config": config_record(config),
         "digits": rows, "mean": mean, "ae": ae, "wins_vs_ae": wins,
         "wall_s": round(time.perf_counter() - started, 1)}, indent=1))
    return mean, wins


if __name__ == "__main__":
    raise SystemExit(main())
