"""Training speed: rows/s per epoch of the product's ``fit`` against a plain torch loop over the
same model and batch size, in one run, and the epochs early stopping actually needs.

    python benchmarks/training_speed.py [--epochs 3] [--repeat 2] [--full]

Two tables from ``benchmarks/batch_scoring.py``'s generator (a 4-factor model; numeric and
categorical columns): 78,000 rows x 40 feature columns, and 3,000 rows x 10 (7 numeric, 3
categorical), the sizes of issue #16. Each is encoded once as the pipeline does, then for
each torch thread count the two contenders alternate, ``--repeat`` times, ``--epochs``
epochs each, from the same initial weights:

* ``fit``: ``training.trainer.fit`` with the defaults (validation each epoch, progress
  off, early stopping bookkeeping), warm-up shortened so every epoch counts, on the
  given number of torch threads (``product``: the count ``fit`` chooses itself);
* ``plain``: ``for batch: loss = elbo(batch); zero_grad; backward; step``, nothing else.

``--full`` also trains each table with the product defaults (200 epochs max, patience 15)
and reports the best epoch, the epochs run and the wall time. Prints tables and writes
benchmarks/results/training_speed.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from batch_scoring import make_block  # noqa: E402
from scoring import finish_run, start_run  # noqa: E402

from anomaly.preprocessing import TabularPreprocessor  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.likelihood import Likelihood  # noqa: E402
from training.splits import plan_splits  # noqa: E402
from training.tabular import infer_schema, likelihood_blocks  # noqa: E402
from training.trainer import choose_threads, fit, train_threads  # noqa: E402
from training.vae import VAE, build_vae  # noqa: E402


def table_data(rows: int, narrow: bool) -> dict[str, np.ndarray]:
    cols = make_block(0, rows, seed=7)
    cols.pop("id")
    if narrow:
        keep = [f"f{j:02d}" for j in range(7)] + ["c0", "c1", "c2"]
        cols = {k: cols[k] for k in keep}
    return cols


def encode(cols: dict[str, np.ndarray], config: TrainConfig
           ) -> tuple[np.ndarray, np.ndarray, Likelihood]:
    """The pipeline's split and encoding (train_tabular without the fit)."""
    n = len(next(iter(cols.values())))
    plan = plan_splits(n, config.holdout_fraction, config.target_fpr, config.seed)
    tr, ho = plan.train, plan.val  # the pipeline's fitting and early-stopping rows
    schema = infer_schema({k: v[tr] for k, v in cols.items()})
    prep = TabularPreprocessor(schema)
    x_train = prep.transform({k: v[tr] for k, v in cols.items()}).x
    x_hold = prep.transform({k: v[ho] for k, v in cols.items()}).x
    return x_train, x_hold, Likelihood(likelihood_blocks(schema, prep.blocks), config.var_floor)


def model(x: np.ndarray, lik: Likelihood, config: TrainConfig) -> VAE:
    torch.manual_seed(config.seed)
    return build_vae(x.shape[1], lik, config.architecture, config.latent_dim,
                     tuple(config.hidden))


def plain_loop(vae: VAE, x: np.ndarray, config: TrainConfig, epochs: int) -> None:
    """The least a training loop does: shuffle, and per batch ELBO, backward, Adam step."""
    gen = torch.Generator().manual_seed(config.seed)
    xt = torch.as_tensor(x)
    opt = torch.optim.Adam(vae.parameters(), lr=config.lr)
    vae.train()
    for _ in range(epochs):
        perm = torch.randperm(xt.shape[0], generator=gen)
        for start in range(0, xt.shape[0], config.batch_size):
            xb = xt[perm[start:start + config.batch_size]]
            eps = torch.randn(xb.shape[0], vae.latent_dim, generator=gen)
            loss = vae.elbo(xb, eps).loss(config.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def compare(name: str, cols: dict[str, np.ndarray], epochs: int, repeat: int,
            threads: list[int | None]) -> list[dict[str, Any]]:
    config = TrainConfig(progress=False, kl_warmup_epochs=1, epochs=epochs, patience=10 ** 6)
    x_train, x_hold, lik = encode(cols, config)
    init = model(x_train, lik, config)
    out = []
    for n_threads in threads:
        times: dict[str, list[float]] = {"fit": [], "plain": []}
        for _ in range(repeat):
            vae = copy.deepcopy(init)
            t0 = time.perf_counter()
            fit(vae, x_train, x_hold, config, threads=n_threads)
            times["fit"].append(time.perf_counter() - t0)
            vae = copy.deepcopy(init)
            with train_threads(n_threads or choose_threads(vae, config)):
                t0 = time.perf_counter()
                plain_loop(vae, x_train, config, epochs)
                times["plain"].append(time.perf_counter() - t0)
        rows_s = {k: x_train.shape[0] * epochs / min(v) for k, v in times.items()}
        row = {"table": name, "rows_train": int(x_train.shape[0]), "features": len(cols),
               "input_dim": int(x_train.shape[1]), "torch_threads": n_threads or "product",
               "fit_rows_per_s": round(rows_s["fit"]),
               "plain_rows_per_s": round(rows_s["plain"]),
               "fit_vs_plain": round(rows_s["fit"] / rows_s["plain"], 3),
               "seconds": {k: [round(t, 2) for t in v] for k, v in times.items()}}
        print(f"  {name}: threads {row['torch_threads']}: fit {row['fit_rows_per_s']:,} rows/s, "
              f"plain {row['plain_rows_per_s']:,} rows/s ({row['fit_vs_plain']:.2f})",
              flush=True)
        out.append(row)
    return out


def full_run(name: str, cols: dict[str, np.ndarray]) -> dict[str, Any]:
    config = TrainConfig(progress=False)
    x_train, x_hold, lik = encode(cols, config)
    vae = model(x_train, lik, config)
    t0 = time.perf_counter()
    result = fit(vae, x_train, x_hold, config)
    wall = time.perf_counter() - t0
    curve = [h["val_elbo"] for h in result.history]
    best = max(curve)
    within = next(i + 1 for i, v in enumerate(curve) if v >= best - 0.01 * abs(best))
    row = {"table": name, "rows_train": int(x_train.shape[0]), "epochs_run": result.epochs_run,
           "best_epoch": result.best_epoch, "epoch_within_1pct_of_best": within,
           "best_val_elbo": round(result.best_val_elbo, 3), "wall_s": round(wall, 1),
           "s_per_epoch": round(wall / result.epochs_run, 3)}
    print(f"  {name}: {row}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", default="1,2,product",
                        help="torch thread counts to compare ('product': fit's own choice)")
    parser.add_argument("--full", action="store_true",
                        help="also train each table with the defaults to early stopping")
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the large table, 1 epoch, 1 repeat (smoke test)")
    parser.add_argument("--out", type=Path, default=HERE / "results/training_speed.json")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.repeat = 1, 1
    threads: list[int | None] = [None if t == "product" else int(t)
                                 for t in args.threads.split(",")]
    run = start_run()
    big = 7_800 if args.quick else 78_000
    tables = {f"{big // 1000}k x 40": table_data(big, narrow=False),
              "3k x 10": table_data(3_000, narrow=True)}
    rows = []
    for name, cols in tables.items():
        rows += compare(name, cols, args.epochs, args.repeat, threads)
    full = [full_run(name, cols) for name, cols in tables.items()] if args.full else []
    result = {**finish_run(run), "torch": torch.__version__, "epochs_per_measure": args.epochs,
              "per_epoch": rows, "to_early_stop": full}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['cpu']}, load {run['load_avg_before'][0]:.2f} before, "
          f"{result['load_avg_after'][0]:.2f} after")
    print("| table | torch threads | fit rows/s | plain loop rows/s | fit / plain |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['table']} | {r['torch_threads']} | {r['fit_rows_per_s']:,} | "
              f"{r['plain_rows_per_s']:,} | {r['fit_vs_plain']:.2f} |")
    if full:
        print("\n| table | epochs run | best epoch | within 1% of best at | wall s | s/epoch |")
        print("|---|---|---|---|---|---|")
        for r in full:
            print(f"| {r['table']} | {r['epochs_run']} | {r['best_epoch']} | "
                  f"{r['epoch_within_1pct_of_best']} | {r['wall_s']} | {r['s_per_epoch']} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
