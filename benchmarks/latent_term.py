"""What the latent term of the tabular score costs per scoring call: the same model scored
with the ``aggregate_free_energy`` score (1,024 and 256 codes), the ``free_energy`` score
(KL to N(0, I)) and plain -log RP.

    python benchmarks/latent_term.py [--seconds 3] [--threads 1]

One table: the 41-column table of ``batch_scoring.py`` (D = 91 after encoding), 8,000 normal
rows, one bundle trained with the defaults. The other graphs are the bundle's own model
exported again with the other latent terms (``training.export.export_graphs``), so the
difference between the rows is the term alone. Calls are interleaved (one call of each in a
fresh order per round, see :func:`interleaved`), each the Scorer's score-only session run on
(B, D) rows with L = the bundle's default. Prints a table, writes
benchmarks/results/latent_term.json.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from batch_scoring import make_block  # noqa: E402
from scoring import cpu_model  # noqa: E402

BATCHES = (1, 64, 1024)


def _sessions(vae: Any, x_fit: np.ndarray, mc_samples: int, threads: int) -> dict[str, Any]:
    import onnxruntime as ort

    from training.aggregate_posterior import fit_aggregate_posterior
    from training.bundle_graphs import score_unexported
    from training.config import TrainConfig
    from training.export import export_graphs

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    vae = vae.cpu().eval()
    config = TrainConfig(latent_dim=vae.latent_dim, mc_samples=mc_samples)
    rec = score_unexported(vae, None, x_fit, config)[0]
    graphs = {
        "codes 1024": export_graphs(vae, kl=True, latent_prior=fit_aggregate_posterior(
            vae, x_fit, rec, 1024, 0)),
        "codes 256": export_graphs(vae, kl=True, latent_prior=fit_aggregate_posterior(
            vae, x_fit, rec, 256, 0)),
        "KL to N(0, I)": export_graphs(vae, kl=True),
        "-log RP only": export_graphs(vae),
    }
    return {k: ort.InferenceSession(g.score, opts, providers=["CPUExecutionProvider"])
            for k, g in graphs.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="time per batch size")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument("--out", type=Path, default=HERE / "results" / "latent_term.json")
    args = p.parse_args(argv)
    from anomaly.inference import Scorer
    from anomaly.inference.noise import latent_noise
    from training.pipeline import tabular_config, train_tabular

    cols = make_block(0, 8000, seed=12345)
    with tempfile.TemporaryDirectory() as tmp:
        report = train_tabular(cols, Path(tmp) / "t", "t", tabular_config(progress=False),
                               exclude=["id"])
        scorer = Scorer(report.path)
        x = scorer.tabular.transform({k: v for k, v in cols.items() if k != "id"}).x
        # rows of the same table stand in for the fitted ones
        sessions = _sessions(report.fit.model, x[:6000], report.manifest.model.mc_samples,
                             args.threads)
    L, d = report.manifest.model.mc_samples, report.manifest.model.latent_dim
    rng = np.random.default_rng(0)
    rows = []
    for B in BATCHES:
        feed = {"x": np.ascontiguousarray(x[:B]),
                "eps": np.ascontiguousarray(latent_noise(0, B, L, d))}
        times: dict[str, list[float]] = {k: [] for k in sessions}
        names = list(sessions)
        end = time.perf_counter() + args.seconds
        while time.perf_counter() < end or min(len(v) for v in times.values()) < 20:
            for k in rng.permutation(names):
                t0 = time.perf_counter()
                sessions[k].run(["score"], feed)
                times[k].append(time.perf_counter() - t0)
        base = float(np.median(times["-log RP only"]))
        for k, v in times.items():
            med = float(np.median(v))
            rows.append({"B": B, "score": k, "median_us": med * 1e6, "rows_per_s": B / med,
                         "vs_rp_only": med / base, "calls": len(v)})
    lines = [f"CPU: {cpu_model()}, {args.threads} onnxruntime thread(s), L = {L}, D = "
             f"{x.shape[1]}", "| B | score | median us/call | rows/s | time vs -log RP only |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['B']} | {r['score']} | {r['median_us']:.0f} | {r['rows_per_s']:.0f} | "
              f"{r['vs_rp_only']:.2f} |" for r in rows]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_model(), "threads": args.threads, "L": L,
                                    "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
