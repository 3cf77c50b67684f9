"""int8 bundles against float32 in one run: samples/s of the score graph, AUROC, and the
test FPR at each bundle's own calibrated threshold (inside its bootstrap interval?).

    python benchmarks/int8.py [--data ../shared/data] [--threads 1] [--seconds 2] [--quick]

Cases (``benchmarks/mc_noise.py``'s data): MNIST digit 7 held out with the image defaults on
an MLP and on the default conv net, and the ODDS satellite table. Each is fitted once; the
float32 graphs and their int8 version (``training.quantize``: the decoder's products,
static u8 x s8, calibrated on the held-out normal rows) come from that one fit, and each
gets its threshold from its own held-out scores (``anomaly.calibration.calibrate``, target
FPR 0.05). Speed: the score-only graphs at B = 256, L = the bundle's, calls alternating,
best call, through ``anomaly.inference.Graph`` (noise and chunking included). Writes
benchmarks/results/int8.json; the CPU's int8 instructions (lscpu flags) go in the JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mc_noise import Case, mnist_case, satellite_case  # noqa: E402
from scoring import finish_run, interleaved, start_run  # noqa: E402

from anomaly.calibration import calibrate  # noqa: E402
from anomaly.calibration.metrics import auroc  # noqa: E402
from anomaly.inference import Graph  # noqa: E402
from anomaly.inference.noise import DEFAULT_SEED  # noqa: E402
from training.export import export_graphs  # noqa: E402
from training.quantize import quantize_graphs  # noqa: E402
from training.reference import LocalReference  # noqa: E402


def int8_flags() -> list[str]:
    try:
        flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return []
    words = set(flags.split())
    return sorted(w for w in words if w in {"avx2", "avx512f", "avx512bw", "avx512_vnni",
                                            "avx_vnni", "amx_int8", "avx512_bf16"})


def bench(case: Case, threads: int, seconds: float) -> dict[str, Any]:
    manifest = case.report.manifest
    m = manifest.model
    desc = m.config.get("reference")
    ref = None
    if desc:
        shape = (manifest.input.channels, manifest.input.height, manifest.input.width)
        ref = LocalReference.from_description(shape, desc)
    fp32 = export_graphs(case.report.fit.model, ref)
    int8 = quantize_graphs(fp32, case.x_hold, m.latent_dim, m.mc_samples)
    graphs = {name: Graph(g.full, m.latent_dim, ["CPUExecutionProvider"], threads,
                          score_model=g.score) for name, g in (("fp32", fp32), ("int8", int8))}
    out: dict[str, Any] = {"case": case.name, "L": m.mc_samples, "input_dim": m.input_dim}
    target = manifest.threshold.target_fpr
    for name, graph in graphs.items():
        hold = graph.score(case.x_hold, DEFAULT_SEED, m.mc_samples).astype(np.float64)
        test = graph.score(case.x_test, DEFAULT_SEED, m.mc_samples).astype(np.float64)
        thr = calibrate(hold, target, seed=DEFAULT_SEED)
        fpr = float(np.mean(test[~case.y_test] > thr.value))
        out[name] = {"auroc": auroc(test, case.y_test), "test_fpr": fpr,
                     "fpr_ci": list(thr.fpr_ci), "threshold": thr.value,
                     "fpr_inside_ci": thr.fpr_ci[0] <= fpr <= thr.fpr_ci[1]}
    x = np.ascontiguousarray(np.resize(case.x_test, (256, case.x_test.shape[1])))
    times = interleaved({name: (lambda g=g: g.score(x, DEFAULT_SEED, m.mc_samples))
                         for name, g in graphs.items()}, seconds, 5)
    for name, ts in times.items():
        out[name]["samples_per_s"] = 256 / min(ts)
    out["speedup"] = out["int8"]["samples_per_s"] / out["fp32"]["samples_per_s"]
    out["auroc_change"] = out["int8"]["auroc"] - out["fp32"]["auroc"]
    print(f"  {case.name:11s} fp32 {out['fp32']['samples_per_s']:9,.0f}/s AUROC "
          f"{out['fp32']['auroc']:.4f} FPR {out['fp32']['test_fpr']:.4f} | int8 "
          f"{out['int8']['samples_per_s']:9,.0f}/s AUROC {out['int8']['auroc']:.4f} FPR "
          f"{out['int8']['test_fpr']:.4f} | {out['speedup']:.2f}x", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results/int8.json")
    args = parser.parse_args()
    run = start_run()
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        work = Path(tmp)
        builders = [lambda: mnist_case(args.data, work, args.quick),
                    lambda: satellite_case(args.data, work, args.quick)]
        if not args.quick:
            builders.insert(1, lambda: mnist_case(args.data, work, False, "conv"))
        rows = [bench(build(), args.threads, args.seconds) for build in builders]
    result = {**finish_run(run), "int8_flags": int8_flags(), "threads": args.threads,
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['cpu']} ({', '.join(result['int8_flags'])}), {args.threads} thread(s); "
          f"load {run['load_avg_before'][0]:.2f} before, {result['load_avg_after'][0]:.2f} after")
    print("| case | L | fp32 samples/s | int8 samples/s | speed-up | fp32 AUROC | int8 AUROC | "
          "change | fp32 test FPR (CI) | int8 test FPR (CI) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f, q = r["fp32"], r["int8"]
        print(f"| {r['case']} | {r['L']} | {f['samples_per_s']:,.0f} | {q['samples_per_s']:,.0f} "
              f"| {r['speedup']:.2f}x | {f['auroc']:.4f} | {q['auroc']:.4f} | "
              f"{r['auroc_change']:+.4f} | {f['test_fpr']:.4f} ({f['fpr_ci'][0]:.3f}-"
              f"{f['fpr_ci'][1]:.3f}) | {q['test_fpr']:.4f} ({q['fpr_ci'][0]:.3f}-"
              f"{q['fpr_ci'][1]:.3f}) |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
