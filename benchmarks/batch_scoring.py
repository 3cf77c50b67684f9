"""Batch scoring of a large CSV: rows/s and peak memory of `anomaly score`, local and Ray engines.

    python benchmarks/batch_scoring.py [--rows 1000000] [--engines local,ray] [--workdir DIR]

Generates a CSV of ``--rows`` rows x 41 columns (an id, 30 correlated numeric columns, 10
categorical ones; a few bad values and malformed lines mixed in), trains a small tabular bundle
on a separate sample of the same distribution, then runs the real CLI once per engine as a
subprocess under GNU time for its peak RSS (the Ray figure is the driver's alone: Ray's
workers are other processes). A second local run on a 10x smaller prefix shows whether memory
grows with the input. Then the engine's steps are timed one by one in this process over the
same file (:func:`stages`), the bundle's score graph among them on the very rows the CLI
scored: the CLI's rows/s against the raw graph's. Prints a table and writes
benchmarks/results/batch_scoring.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

HERE = Path(__file__).resolve().parent
TIME = "/usr/bin/time"  # GNU time (Debian package `time`): peak RSS of the scoring process
N_NUM, N_CAT = 30, 10
CATEGORIES = np.array(["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"],
                      dtype=object)


def make_block(start: int, n: int, seed: int) -> dict[str, np.ndarray]:
    """Rows start..start+n: a 4-factor model; categorical columns are noisy bins of factors."""
    rng = np.random.default_rng([seed, start])
    mixing = np.random.default_rng(99).normal(size=(4, N_NUM))  # the same for every block
    z = rng.normal(size=(n, 4))
    x = z @ mixing + rng.normal(size=(n, N_NUM)) * 0.3
    cols: dict[str, np.ndarray] = {"id": np.arange(start, start + n)}
    for j in range(N_NUM):
        cols[f"f{j:02d}"] = np.round(x[:, j], 5)
    for k in range(N_CAT):
        m = 3 + k % 6
        level = (z[:, k % 4] + rng.normal(size=n) * 0.3) * m / 4 + m / 2
        cols[f"c{k}"] = CATEGORIES[np.clip(level.astype(int), 0, m - 1)]
    return cols


def write_csv(path: Path, rows: int, seed: int, block: int = 100_000) -> dict[str, int]:
    """Write the benchmark CSV in blocks (bounded memory); every 9973rd row gets a word in a
    numeric column and a malformed line follows every block: both must end up as rejects."""
    bad_values = malformed = 0
    with path.open("wb") as fh:
        for start in range(0, rows, block):
            cols = make_block(start, min(block, rows - start), seed)
            f07 = cols["f07"].astype(str).astype(object)
            hit = (cols["id"] % 9973) == 5
            f07[hit] = "n.a."
            bad_values += int(hit.sum())
            cols["f07"] = f07
            buf = io.BytesIO()
            pacsv.write_csv(pa.table(cols), buf,
                            write_options=pacsv.WriteOptions(include_header=start == 0))
            fh.write(buf.getvalue())
            if start + block < rows:
                fh.write(b"999,1.0,2.0\n")  # 3 fields where the header has 41
                malformed += 1
    return {"bad_values": bad_values, "malformed_lines": malformed}


def train(bundle: Path, rows: int, epochs: int) -> dict[str, Any]:
    from training.config import TrainConfig
    from training.pipeline import train_tabular

    cols = make_block(0, rows, seed=12345)  # another draw from the same distribution
    started = time.perf_counter()
    report = train_tabular(cols, bundle, "bench", TrainConfig(epochs=epochs, progress=False),
                           exclude=["id"])
    m = report.manifest.model
    return {"rows": rows, "epochs": epochs, "seconds": round(time.perf_counter() - started, 1),
            "input_dim": m.input_dim, "latent_dim": m.latent_dim, "mc_samples": m.mc_samples,
            "hidden": list(m.config.get("hidden", []))}


def run_score(bundle: Path, source: Path, out: Path, *extra: str) -> dict[str, Any]:
    """One `anomaly score` subprocess: wall time, the summary's figures and peak RSS."""
    cmd = [sys.executable, "-m", "anomaly", "score", str(bundle), str(source), "--out",
           str(out), "--id-column", "id", "--quiet", *extra]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # GNU time forks the child from its own small process: a child forked from this one
        # would start its peak-RSS count at this process's size (torch is loaded here)
        rss_file = Path(tmp) / "rss"
        proc = subprocess.run([TIME, "-f", "%M", "-o", str(rss_file), *cmd],
                              capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        peak_kib = int(rss_file.read_text().split()[-1])
    stdout = proc.stdout
    match = re.search(r"scored (\d+) samples in ([\d.]+)s", stdout)
    rejected = re.search(r"rejected (\d+)", stdout)
    flagged = re.search(r"flagged (\d+)", stdout)
    assert match and flagged, stdout
    scored = int(match.group(1))
    total = scored + (int(rejected.group(1)) if rejected else 0)
    return {"command": " ".join(["anomaly", *cmd[3:]]), "wall_s": round(seconds, 1),
            "scored": scored, "rejected": int(rejected.group(1)) if rejected else 0,
            "anomalies": int(flagged.group(1)), "rows_per_s": round(total / seconds),
            "peak_rss_mib": round(peak_kib / 1024),
            "load_avg_1m_before": round(load_before, 2),
            "load_avg_1m_after": round(os.getloadavg()[0], 2), "summary": stdout.strip()}


def stages(bundle: Path, source: Path, chunk_rows: int) -> dict[str, Any]:
    """The local engine's steps one after another on this thread, each timed alone, over the
    whole file: reading + parsing (``iter_table_chunks``), encoding (``prepare_table_chunk``),
    the bundle's ``score.onnx`` on the encoded rows through a raw session (noise given; one
    intra-op thread as the engine's workers run it, and all cores), the engine's scoring step
    (``score_prepared``: the graph on one thread plus p-values and the result table), and the
    output file. ``graph_rows_per_s``: the raw graph's speed on the rows the CLI scores."""
    from anomaly.batch.chunks import ScoreSettings, prepare_table_chunk, score_prepared, x_matrix
    from anomaly.batch.sink import ResultLayout, ResultSink
    from anomaly.batch.sources import REJECT_COL, iter_table_chunks
    from anomaly.inference import Scorer
    from anomaly.inference.graph import onnxruntime, session_options
    from anomaly.inference.noise import latent_noise

    ort = onnxruntime()
    scorer = Scorer(bundle, providers=["CPUExecutionProvider"], intra_op_threads=1)
    assert scorer.bundle.score_model_path is not None
    sessions = {n: ort.InferenceSession(str(scorer.bundle.score_model_path),
                                        session_options(n), providers=["CPUExecutionProvider"])
                for n in (1, os.cpu_count() or 1)}
    prep, L = scorer.tabular, scorer.mc_samples
    columns = list(dict.fromkeys([*prep.column_names, "id"]))
    layout = ResultLayout("tabular", (str(source),), "id", None, 0)
    settings = ScoreSettings(layout)
    seconds = {"read": 0.0, "encode": 0.0, **{f"graph_{n}t": 0.0 for n in sessions},
               "score_step": 0.0, "write": 0.0}
    rows = scored = 0
    with tempfile.TemporaryDirectory() as tmp:
        sink = ResultSink(Path(tmp) / "out.parquet", layout)
        chunks = iter_table_chunks(source, 0, columns, chunk_rows)
        while True:
            t0 = time.perf_counter()
            raw = next(chunks, None)
            seconds["read"] += time.perf_counter() - t0
            if raw is None:
                break
            t0 = time.perf_counter()
            prepared = prepare_table_chunk(prep, raw, layout, True)
            seconds["encode"] += time.perf_counter() - t0
            ok = np.asarray(prepared.column(REJECT_COL).is_null())
            x = np.ascontiguousarray(x_matrix(prepared)[ok])
            step = scorer.graph.chunk_rows(L)  # the rows per call the Scorer uses
            feeds = [{"x": x[a:a + step], "eps": np.ascontiguousarray(latent_noise(
                0, x[a:a + step].shape[0], L, scorer.latent_dim))}
                for a in range(0, x.shape[0], step)]
            for n, session in sessions.items():
                t0 = time.perf_counter()
                for feed in feeds:
                    session.run(["score"], feed)
                seconds[f"graph_{n}t"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            result = score_prepared(scorer, prepared, settings)
            seconds["score_step"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            sink.write(result)
            seconds["write"] += time.perf_counter() - t0
            rows += raw.num_rows
            scored += x.shape[0]
        t0 = time.perf_counter()
        sink.commit()
        seconds["write"] += time.perf_counter() - t0
    best_graph = min(v for k, v in seconds.items() if k.startswith("graph_"))
    return {"rows": rows, "scored": scored,
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "graph_rows_per_s": round(scored / best_graph),
            "rows_per_s_by_stage": {k: round(rows / v) for k, v in seconds.items() if v > 0}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs per engine, alternating engines (the machine is shared: "
                             "the best run is the least disturbed)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the data, bundle and outputs here (default: a temp dir)")
    parser.add_argument("--no-stages", action="store_true",
                        help="skip timing the engine's steps one by one in this process")
    parser.add_argument("--out", type=Path, default=HERE / "results/batch_scoring.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "big.csv"
        started = time.perf_counter()
        injected = write_csv(data, args.rows, seed=0)
        print(f"wrote {data}: {args.rows} rows x 41 columns, "
              f"{data.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - started:.0f}s")
        prefix = work / "prefix.csv"
        with data.open("rb") as src, prefix.open("wb") as dst:
            for i, line in enumerate(src):
                if i > args.rows // 10:
                    break
                dst.write(line)
        bundle = work / "bundle"
        model = train(bundle, args.train_rows, args.epochs)
        print(f"trained {bundle}: {model}")

        runs: dict[str, Any] = {}
        runs["local_prefix"] = run_score(bundle, prefix, work / "prefix.parquet")
        engines = args.engines.split(",")
        for rep in range(args.repeat):
            for engine in engines:
                runs[f"{engine}#{rep + 1}"] = run_score(bundle, data, work / f"{engine}.parquet",
                                                        "--engine", engine)
        if {"local", "ray"} <= set(engines):
            same = (work / "local.parquet").read_bytes() == (work / "ray.parquet").read_bytes()
            for name in runs:
                if name.startswith("ray#"):
                    runs[name]["identical_to_local"] = same
        best = {engine: max((r for n, r in runs.items() if n.startswith(f"{engine}#")),
                            key=lambda r: r["rows_per_s"]) for engine in engines}
        steps = stages(bundle, data, 16384) if not args.no_stages else None

    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "note": "2 cores shared with other jobs: see load_avg fields"},
        "data": {"rows": args.rows, "columns": 41, "numeric": N_NUM, "categorical": N_CAT,
                 "id": 1, "csv_mib": round(data.stat().st_size / 2**20) if data.exists()
                 else None, **injected},
        "bundle": model, "runs": runs,
        "best_rows_per_s": {engine: r["rows_per_s"] for engine, r in best.items()},
        "stages": steps,
        "local_cli_vs_raw_graph": round(best["local"]["rows_per_s"] / steps["graph_rows_per_s"],
                                        3) if steps and "local" in best else None,
        "peak_rss_mib": {"local_100k_rows": runs["local_prefix"]["peak_rss_mib"],
                         "local_1m_rows": best["local"]["peak_rss_mib"] if "local" in best
                         else None},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'run':<14}{'rows':>10}{'wall s':>9}{'rows/s':>9}{'peak RSS':>10}"
          f"{'rejected':>10}{'load 1m':>9}")
    for name, r in runs.items():
        rows = r["scored"] + r["rejected"]
        rss = f"{r['peak_rss_mib']} MiB"
        print(f"{name:<14}{rows:>10}{r['wall_s']:>9}{r['rows_per_s']:>9}{rss:>10}"
              f"{r['rejected']:>10}{r['load_avg_1m_before']:>9}")
    print("best rows/s: " + ", ".join(f"{e} {r['rows_per_s']}" for e, r in best.items()))
    for r in runs.values():
        if "identical_to_local" in r:
            print(f"ray output byte-identical to local: {r['identical_to_local']}")
            break
    if steps:
        print(f"stages, one after another on one thread (s): {steps['seconds']}")
        print(f"raw graph on the same rows: {steps['graph_rows_per_s']:,} rows/s; local CLI / "
              f"raw graph = {result['local_cli_vs_raw_graph']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
