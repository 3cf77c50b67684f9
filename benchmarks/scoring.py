"""Scoring at the machine's limit: the bundle's graph beside a lean hand-written graph and
onnxruntime's own MatMul peak, and the Scorer beside the raw session, in one run.

    python benchmarks/scoring.py [--data ../shared/data/mnist] [--threads 2] [--seconds 1]

Three bundles (weights from one short epoch: they do not change the cost): an MLP image model
784-400-200-20 with a Gaussian decoder (the model of issue #16), the default conv image model
(likelihood ratio against the local reference), and a tabular model of the 41-column table of
``benchmarks/batch_scoring.py``. For each batch size B and latent samples L, calls of these
contenders alternate, so the machine's other load hits them alike (best call reported, and
the median):

* ``lean``: the leanest score graph we can write by hand for the model (``lean_graphs.py``);
* ``bundle``: the bundle's ``score.onnx`` through a raw ``session.run`` (noise given), on
  the very session the Scorer holds;
* ``plain``: the graph bundles shipped before the folded export (``ReconstructionProbability``,
  all three outputs computed), raw session;
* ``scorer``: ``Scorer.score(x, seed, L)``: noise, chunking, p-values, thresholds included.

All sessions use the product's session options (``anomaly.inference.graph.session_options``)
with ``--threads`` intra-op threads. GFLOP/s counts the GEMMs and convolutions of the
networks (2 x multiply-adds: encoder once per sample, decoder once per draw); % of peak is
against the best (n x n) @ (n x n) MatMul of the same run, measured before, between and after
the models. Writes benchmarks/results/scoring.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from batch_scoring import make_block  # noqa: E402
from lean_graphs import gemm_flops, lean_score_graph, matmul_graph  # noqa: E402

from anomaly.bundle import ImageInput  # noqa: E402
from anomaly.inference import Scorer  # noqa: E402
from anomaly.inference.graph import session_options  # noqa: E402
from anomaly.inference.noise import latent_noise  # noqa: E402
from training.export import OUTPUT_NAMES, export_module  # noqa: E402
from training.reference import LocalReference  # noqa: E402
from training.vae import VAE, ReconstructionProbability  # noqa: E402

#: (B, L) cells: every B at L = 10, then L = 1 and 100 at the smaller batches.
CELLS = [(1, 10), (32, 10), (256, 10), (2048, 10), (1, 1), (32, 1), (256, 1), (2048, 1),
         (1, 100), (32, 100), (256, 100)]
QUICK_CELLS = [(1, 10), (32, 10), (32, 1)]


@dataclass
class Model:
    name: str
    bundle: Path
    vae: VAE
    reference: LocalReference | None
    x: np.ndarray  # (N, D) preprocessed inputs, N >= the largest B


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def start_run() -> dict[str, Any]:
    """When a benchmark run started and the load then (the host is shared)."""
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_avg_before": [round(v, 2) for v in os.getloadavg()]}


def finish_run(started: dict[str, Any]) -> dict[str, Any]:
    """The run's header for its JSON: date, CPU, load before and after, command."""
    return {**started, "cpu": cpu_model(), "cpus": os.cpu_count(),
            "load_avg_after": [round(v, 2) for v in os.getloadavg()],
            "command": " ".join(["python", *sys.argv])}


def write_result(out: Path, result: dict[str, Any], table_text: str, setting: str = "") -> None:
    """Write a run's JSON and print its footer: CPU (and ``setting``), the load before and
    after (the host is shared), the table, and where the JSON went."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['cpu']}{setting}; load {result['load_avg_before'][0]:.2f} before, "
          f"{result['load_avg_after'][0]:.2f} after")
    print(table_text)
    print(f"wrote {out}")


def mnist_images(data: Path, n: int) -> np.ndarray:
    """(n, 1, 28, 28) in [0, 1]: MNIST training images, or random ones without the data."""
    from training.mnist import load_mnist

    try:
        images, _ = load_mnist(data, "train")
    except FileNotFoundError:
        print(f"MNIST not found in {data}: random images (weights and cost are the same)")
        return np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)
    return (images[:n, None] / 255.0).astype(np.float32)


def build_models(work: Path, data: Path, quick: bool) -> list[Model]:
    from training.pipeline import image_config, tabular_config, train_images, train_tabular

    models = []
    images = mnist_images(data, 3000 if not quick else 600)
    schema = ImageInput(height=28, width=28, channels=1)
    x_img = images.reshape(len(images), -1)
    short = {"epochs": 1, "kl_warmup_epochs": 1, "progress": False, "mc_samples": 10}
    specs: list[tuple[str, dict[str, Any]]] = [
        ("mlp", {"architecture": "mlp", "hidden": (400, 200), "latent_dim": 20,
                 "reference": "none"})]
    if not quick:
        specs.append(("conv", {}))
    for name, overrides in specs:
        report = train_images(images, schema, work / name, name,
                              image_config(schema, **overrides, **short))
        desc = report.manifest.model.config.get("reference")
        ref = LocalReference.from_description((1, 28, 28), desc) if desc else None
        models.append(Model(name, report.path, report.fit.model, ref, x_img))
    if not quick:
        cols = make_block(0, 8000, seed=12345)
        # -log RP alone, the score the lean graph computes (the latent term's cost is
        # benchmarks/latent_term.py's); with it the lean-vs-bundle check below would fail
        report = train_tabular(cols, work / "tabular", "tabular",
                               tabular_config(**short, score_kl=False), exclude=["id"])
        x_tab = Scorer(report.path).tabular.transform(
            {k: v for k, v in cols.items() if k != "id"}).x
        models.append(Model("tabular", report.path, report.fit.model, None, x_tab))
    return models


def interleaved(fns: dict[str, Callable[[], object]], seconds: float, min_calls: int
                ) -> dict[str, list[float]]:
    """Call times (s) of each fn, called in turn until each had ``seconds`` and
    ``min_calls``; one untimed warm-up call each first."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    while True:
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if all(len(t) >= min_calls and sum(t) >= seconds for t in times.values()):
            return times


def peak_gflops(threads: int, n: int, calls: int = 5) -> float:
    sess = ort.InferenceSession(matmul_graph(n), session_options(threads),
                                providers=["CPUExecutionProvider"])
    a = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    sess.run(None, {"a": a})
    best = min(_timed(lambda: sess.run(None, {"a": a})) for _ in range(calls))
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_model(m: Model, cells: list[tuple[int, int]], threads: int, seconds: float
                ) -> list[dict[str, Any]]:
    opts = session_options(threads)
    cpu = ["CPUExecutionProvider"]
    scorer = Scorer(m.bundle, providers=cpu, intra_op_threads=threads)
    assert scorer.bundle.score_model_path is not None
    sessions = {
        "lean": ort.InferenceSession(lean_score_graph(m.vae, m.reference), opts, providers=cpu),
        # the Scorer's own session: the two differ by the Scorer's work alone (a second
        # session would hold its own copy of the weights, and at B = 1 the cache decides)
        "bundle": scorer.graph.score_session,
        "plain": ort.InferenceSession(export_module(
            ReconstructionProbability(m.vae.cpu().eval(), m.reference), m.vae.input_dim,
            m.vae.latent_dim, OUTPUT_NAMES, "plain"), opts, providers=cpu),
    }
    enc, dec = gemm_flops(m.vae)
    rows = []
    for B, L in cells:
        x = np.ascontiguousarray(np.resize(m.x, (B, m.x.shape[1])))
        eps = np.ascontiguousarray(latent_noise(0, B, L, m.vae.latent_dim))
        feed = {"x": x, "eps": eps}
        lean, bundle = (sessions[k].run(["score"], feed)[0] for k in ("lean", "bundle"))
        np.testing.assert_allclose(lean, bundle, rtol=1e-4, atol=1e-3)  # same score
        np.testing.assert_allclose(scorer.score(x, 0, L).scores, bundle, rtol=1e-5, atol=1e-5)
        fns: dict[str, Callable[[], object]] = {
            "lean": lambda feed=feed: sessions["lean"].run(["score"], feed),
            "bundle": lambda feed=feed: sessions["bundle"].run(["score"], feed),
            "plain": lambda feed=feed: sessions["plain"].run(None, feed),
            "scorer": lambda x=x, L=L: scorer.score(x, 0, L),
        }
        heavy = B * L * dec > 5e10  # a call of seconds: fewer of them
        times = interleaved(fns, seconds if not heavy else 0.0, 2 if heavy else 5)
        flops = enc * B + dec * B * L
        row: dict[str, Any] = {"model": m.name, "B": B, "L": L, "gflop_per_call": flops / 1e9}
        for name, ts in times.items():
            row[name] = {"best": B / min(ts), "median": B / float(np.median(ts)),
                         "calls": len(ts)}
        row["bundle_gflops"] = flops / min(times["bundle"]) / 1e9
        row["lean_gflops"] = flops / min(times["lean"]) / 1e9
        rows.append(row)
        print(f"  {m.name:8s} B={B:5d} L={L:4d}  lean {row['lean']['best']:10,.0f}  bundle "
              f"{row['bundle']['best']:10,.0f}  plain {row['plain']['best']:10,.0f}  scorer "
              f"{row['scorer']['best']:10,.0f}  /s", flush=True)
    return rows


#: (B, L) cells of the device mode (issue #16: samples/s at L = 10 for B = 256 and 4096).
DEVICE_CELLS = [(256, 10), (4096, 10)]


def bench_device(m: Model, provider: str, seconds: float) -> list[dict[str, Any]]:
    """Samples/s of the bundle's score graph on ``provider`` (CUDAExecutionProvider on a GPU
    host), two ways per cell, calls interleaved: ``run``, numpy in and out (each call copies
    x and eps to the device and the score back), and ``iobinding``, x and eps placed on the
    device once and the score left there (what a caller that keeps its data on the GPU
    gets). On the CPU provider both are host memory: the same code path, checkable
    anywhere."""
    device = "cuda" if provider == "CUDAExecutionProvider" else "cpu"
    scorer = Scorer(m.bundle, providers=[provider])
    session = scorer.graph.score_session
    if session.get_providers()[0] != provider:
        raise SystemExit(f"{provider} is not available here: {session.get_providers()}")
    rows = []
    for B, L in DEVICE_CELLS:
        x = np.ascontiguousarray(np.resize(m.x, (B, m.x.shape[1])))
        eps = np.ascontiguousarray(latent_noise(0, B, L, m.vae.latent_dim))
        binding = session.io_binding()
        binding.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(x, device, 0))
        binding.bind_ortvalue_input("eps", ort.OrtValue.ortvalue_from_numpy(eps, device, 0))
        binding.bind_output("score", device)

        def bound(binding: Any = binding) -> None:
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        bound()
        np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0],
                                   session.run(["score"], {"x": x, "eps": eps})[0],
                                   rtol=1e-4, atol=1e-3)
        times = interleaved({"run": lambda x=x, eps=eps: session.run(["score"],
                                                                    {"x": x, "eps": eps}),
                             "iobinding": bound}, seconds, 5)
        row: dict[str, Any] = {"model": m.name, "B": B, "L": L, "provider": provider}
        for name, ts in times.items():
            row[name] = {"best": B / min(ts), "median": B / float(np.median(ts)),
                         "calls": len(ts)}
        rows.append(row)
        print(f"  {m.name:8s} {provider} B={B:5d} L={L:3d}  run {row['run']['median']:12,.0f}"
              f"  iobinding {row['iobinding']['median']:12,.0f}  samples/s", flush=True)
    return rows


def table(rows: list[dict[str, Any]], peak: float) -> str:
    lines = ["| model | B | L | lean /s | bundle /s | plain (before) /s | Scorer /s | bundle "
             "GFLOP/s | % of MatMul peak | bundle / lean | bundle / plain | Scorer / bundle |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, lean, plain, sc = (r[k]["best"] for k in ("bundle", "lean", "plain", "scorer"))
        lines.append(
            f"| {r['model']} | {r['B']} | {r['L']} | {lean:,.0f} | {b:,.0f} | {plain:,.0f} | "
            f"{sc:,.0f} | {r['bundle_gflops']:.1f} | {100 * r['bundle_gflops'] / peak:.0f}% | "
            f"{b / lean:.2f} | {b / plain:.2f} | {sc / b:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/mnist")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="timed seconds per contender and cell (at least 5 calls)")
    parser.add_argument("--peak-n", type=int, default=2048)
    parser.add_argument("--quick", action="store_true", help="MLP only, three small cells")
    parser.add_argument("--out", type=Path, default=HERE / "results/scoring.json")
    parser.add_argument("--device", metavar="PROVIDER", default=None,
                        help="instead of the CPU table: samples/s of each bundle's score graph "
                             "on this execution provider (CUDAExecutionProvider on a GPU "
                             "host), numpy feeds vs IO binding, B = 256 and 4096, L = 10; "
                             "writes results/scoring_device.json")
    args = parser.parse_args()
    run = start_run()
    if args.device:
        device_main(args, run)
        return
    cells = QUICK_CELLS if args.quick else CELLS
    with tempfile.TemporaryDirectory(prefix="scoring-bench-") as tmp:
        models = build_models(Path(tmp), args.data, args.quick)
        peaks = [peak_gflops(args.threads, args.peak_n)]
        print(f"MatMul {args.peak_n}^3 peak: {peaks[-1]:.1f} GFLOP/s", flush=True)
        rows: list[dict[str, Any]] = []
        for m in models:
            rows += bench_model(m, cells, args.threads, args.seconds)
            peaks.append(peak_gflops(args.threads, args.peak_n))
            print(f"MatMul {args.peak_n}^3 peak: {peaks[-1]:.1f} GFLOP/s", flush=True)
    peak = max(peaks)
    result = {
        **finish_run(run), "threads": args.threads, "onnxruntime": ort.__version__,
        "matmul_peak_gflops": peaks,
        "peak_gflops": peak, "cells": rows,
        "note": "samples/s of the best call (calls interleaved); medians in the JSON",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['cpu']}, {args.threads} threads, onnxruntime {ort.__version__}, MatMul "
          f"peak {peak:.1f} GFLOP/s (runs: {', '.join(f'{p:.1f}' for p in peaks)}); load "
          f"{run['load_avg_before'][0]:.2f} before, {result['load_avg_after'][0]:.2f} after")
    print(table(rows, peak))
    print(f"wrote {args.out}")


def device_main(args: argparse.Namespace, run: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="scoring-device-") as tmp:
        rows = [r for m in build_models(Path(tmp), args.data, args.quick)
                for r in bench_device(m, args.device, args.seconds)]
    out = args.out.with_name("scoring_device.json") if args.out.name == "scoring.json" \
        else args.out
    result = {**finish_run(run), "provider": args.device, "onnxruntime": ort.__version__,
              "cells": rows, "note": "samples/s, median call (calls interleaved)"}
    lines = ["| model | B | L | run samples/s | IO binding samples/s |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['B']} | {r['L']} | {r['run']['median']:,.0f} | "
              f"{r['iobinding']['median']:,.0f} |" for r in rows]
    write_result(out, result, "\n".join(lines), f", {args.device}")


if __name__ == "__main__":
    main()
