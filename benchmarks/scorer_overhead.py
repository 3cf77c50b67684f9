"""The Scorer's own cost per call: ``Scorer.score`` beside the raw onnxruntime session it
wraps, call by call, for the small batches where that cost shows (issue #16's aim: the
Scorer at >= 85% of the raw session's calls/s at B = 1).

    python benchmarks/scorer_overhead.py [--data ../shared/data/mnist] [--calls 30000]

``benchmarks/scoring.py`` reports the best call of each contender; at B = 1 a call is tens of
microseconds, and which contender ran last decides what is in the cache, so this script
alternates single calls instead and reports medians over many of them (several rounds, in a
fresh order each round). Contenders, all on the Scorer's own session (one copy of the
weights), one intra-op thread:

* ``raw``: what a user of onnxruntime writes: the latent noise drawn (``latent_noise``, the
  Scorer's cached draws) and the public ``session.run`` of the score and per-draw weights;
* ``raw_score``: the same, fetching the score alone;
* ``scorer``: ``Scorer.score(x)``: checks, noise, the graph, p-values, flags, the result;
* ``rows``: ``Scorer.score_rows([row])`` for tabular bundles: the service's path, the
  row's encoding included.

Bundles: the 30-column breast-cancer table (``sklearn.datasets``, shipped with scikit-learn),
the 41-column table of ``batch_scoring.py`` (D = 91), and the MNIST MLP 784-400-200-20
(random images without ../shared). Writes benchmarks/results/scorer_overhead.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from batch_scoring import make_block  # noqa: E402
from scoring import finish_run, mnist_images, start_run, write_result  # noqa: E402

from anomaly.bundle import ImageInput  # noqa: E402
from anomaly.inference import Scorer  # noqa: E402
from anomaly.inference.noise import latent_noise  # noqa: E402

QUIET = {"progress": False}


def build(work: Path, data: Path) -> list[tuple[str, Path, list[dict[str, Any]] | None]]:
    """(name, bundle, rows for score_rows or None) for each model."""
    from sklearn.datasets import load_breast_cancer

    from training.pipeline import image_config, tabular_config, train_images, train_tabular

    out: list[tuple[str, Path, list[dict[str, Any]] | None]] = []
    bc = load_breast_cancer()
    normal = bc.data[bc.target == 1]
    names = [f"f{i}" for i in range(normal.shape[1])]
    cols = {n: normal[:, i] for i, n in enumerate(names)}
    report = train_tabular(cols, work / "breast", "breast", tabular_config(seed=0, **QUIET))
    out.append(("breast (D=30)", report.path,
                [{n: float(v) for n, v in zip(names, row, strict=True)} for row in normal]))
    block = make_block(0, 4000, seed=12345)
    block.pop("id")
    report = train_tabular(block, work / "wide", "wide",
                           tabular_config(seed=0, epochs=3, kl_warmup_epochs=1, **QUIET))
    frame_rows = [{k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in block.items()}
                  for i in range(200)]
    out.append(("table41 (D=91)", report.path, frame_rows))
    images = mnist_images(data, 600)
    schema = ImageInput(height=28, width=28, channels=1)
    report = train_images(images, schema, work / "mlp", "mlp", image_config(
        schema, architecture="mlp", hidden=(400, 200), latent_dim=20, reference="none",
        epochs=1, kl_warmup_epochs=1, mc_samples=10, **QUIET))
    out.append(("mlp 784-400-200-20", report.path, None))
    return out


def alternate(fns: dict[str, Callable[[], object]], calls: int, rounds: int,
              rng: np.random.Generator) -> dict[str, list[float]]:
    """Per-call times (us) of each fn, called one after another ``calls`` times per round,
    in a new order each round; the first 5% of each round is warm-up and dropped."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    per_round = max(calls // rounds, 20)
    for _ in range(rounds):
        order = [names[i] for i in rng.permutation(len(names))]
        got: dict[str, list[int]] = {k: [] for k in names}
        for _ in range(per_round):
            for k in order:
                t0 = time.perf_counter_ns()
                fns[k]()
                got[k].append(time.perf_counter_ns() - t0)
        for k, ts in got.items():
            times[k] += [t / 1000 for t in ts[per_round // 20:]]
    return times


def bench(name: str, bundle: Path, rows: list[dict[str, Any]] | None, batches: list[int],
          calls: int, rounds: int) -> list[dict[str, Any]]:
    scorer = Scorer(bundle, providers=["CPUExecutionProvider"], intra_op_threads=1)
    session = scorer.graph.score_session
    outputs = [o.name for o in session.get_outputs()]  # score, log_weights
    L, dz = scorer.mc_samples, scorer.latent_dim
    rng = np.random.default_rng(0)
    if rows is not None:
        pool = scorer.tabular.encode_rows(rows)
    else:
        pool = np.random.default_rng(1).random((256, scorer.input_dim), dtype=np.float32)
    out = []
    for B in batches:
        x = np.ascontiguousarray(np.resize(pool, (B, pool.shape[1])))

        def raw(x: np.ndarray = x, names: list[str] = outputs) -> Any:
            return session.run(names, {"x": x, "eps": latent_noise(0, len(x), L, dz)})

        fns: dict[str, Callable[[], object]] = {
            "raw": raw, "raw_score": lambda x=x: raw(x, ["score"]),
            "scorer": lambda x=x: scorer.score(x)}
        if rows is not None:
            batch_rows = [rows[i % len(rows)] for i in range(B)]
            fns["rows"] = lambda r=batch_rows: scorer.score_rows(r)
            np.testing.assert_array_equal(scorer.score_rows(batch_rows).scores,
                                          scorer.score(x).scores)
        np.testing.assert_allclose(scorer.score(x).scores, raw()[0], rtol=1e-6)
        times = alternate(fns, calls if B == 1 else max(calls // 20, 200), rounds, rng)
        med = {k: float(np.median(v)) for k, v in times.items()}
        row: dict[str, Any] = {"model": name, "B": B, "L": L,
                               "median_us": med, "calls": len(times["raw"]),
                               "scorer_over_raw": med["raw"] / med["scorer"],
                               "scorer_over_raw_score": med["raw_score"] / med["scorer"]}
        if "rows" in med:
            row["rows_over_raw"] = med["raw"] / med["rows"]
        out.append(row)
        print(f"  {name:20s} B={B:4d} L={L:3d}  raw {med['raw']:8.1f} us  scorer "
              f"{med['scorer']:8.1f} us  -> {row['scorer_over_raw']:.2f}", flush=True)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | B | L | raw us | raw (score only) us | Scorer us | rows us | "
             "Scorer / raw | Scorer / raw (score only) | rows / raw |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["median_us"]
        rows_us = f"{m['rows']:.1f}" if "rows" in m else "-"
        rows_ratio = f"{r['rows_over_raw']:.2f}" if "rows_over_raw" in r else "-"
        lines.append(f"| {r['model']} | {r['B']} | {r['L']} | {m['raw']:.1f} | "
                     f"{m['raw_score']:.1f} | {m['scorer']:.1f} | {rows_us} | "
                     f"{r['scorer_over_raw']:.2f} | {r['scorer_over_raw_score']:.2f} | "
                     f"{rows_ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/mnist")
    parser.add_argument("--calls", type=int, default=30000, help="calls per contender at B=1")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", default="1,32,256")
    parser.add_argument("--out", type=Path, default=HERE / "results/scorer_overhead.json")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    run = start_run()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scorer-overhead-") as tmp:
        for name, bundle, table_rows in build(Path(tmp), args.data):
            rows += bench(name, bundle, table_rows, batches, args.calls, args.rounds)
    result = {**finish_run(run), "threads": 1, "cells": rows,
              "note": "medians of single calls, contenders alternating call by call"}
    write_result(args.out, result, table(rows), ", 1 intra-op thread")


if __name__ == "__main__":
    main()
