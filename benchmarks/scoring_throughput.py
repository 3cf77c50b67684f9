"""Scoring throughput of an MNIST-size bundle: onnxruntime (the product path) vs torch eager.

    python benchmarks/scoring_throughput.py [--data ../shared/data/mnist] [--seconds 5]

Trains a small MLP and conv bundle on MNIST (or on random images when the data is absent;
weights do not change the cost), then times the same graph, D=784, L=10, batch 256, both ways
with the same thread count. Prints a table and writes benchmarks/results/scoring_throughput.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from anomaly.bundle import ImageInput
from anomaly.inference import Scorer
from anomaly.inference.noise import latent_noise
from training.pipeline import image_config, train_images
from training.vae import ReconstructionProbability

HERE = Path(__file__).resolve().parent


def load_images(data: Path, n: int) -> np.ndarray:
    path = data / "train-images-idx3-ubyte.gz"
    if path.is_file():
        with gzip.open(path) as fh:
            raw = np.frombuffer(fh.read(), dtype=np.uint8, offset=16)
        return (raw.reshape(-1, 1, 28, 28)[:n] / 255.0).astype(np.float32)
    print(f"{path} not found: timing on random images instead")
    return np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)


def torch_eager(graph: ReconstructionProbability, x: torch.Tensor, eps: torch.Tensor) -> None:
    with torch.inference_mode():
        graph(x, eps)


def interleaved(fns: dict[str, Callable[[], object]], batch: int, seconds: float
                ) -> dict[str, dict[str, float]]:
    """Samples/s of each ``fn()`` (each scores ``batch`` samples), timed call by call in
    alternation so that load from other processes hits every contender alike. Reports the
    best call (least disturbed) and the median call."""
    for fn in fns.values():
        for _ in range(3):
            fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    started = time.perf_counter()
    while time.perf_counter() - started < seconds * len(fns) or min(map(len, times.values())) < 5:
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: {"best": batch / min(ts), "median": batch / float(np.median(ts)),
                   "calls": len(ts)} for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/mnist")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--mc-samples", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=HERE / "results/scoring_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = load_images(args.data, 6000)
    schema = ImageInput(height=28, width=28, channels=1)
    x = images[: args.batch].reshape(args.batch, -1)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("mlp", "conv"):
            config = image_config(schema, architecture=arch, epochs=2, kl_warmup_epochs=1,
                                  mc_samples=args.mc_samples, progress=False)
            report = train_images(images, schema, Path(tmp) / arch, arch, config)
            scorer = Scorer(report.path, providers=["CPUExecutionProvider"],
                            intra_op_threads=args.threads)
            graph = ReconstructionProbability(report.fit.model.cpu().eval())
            eps = torch.from_numpy(np.ascontiguousarray(
                latent_noise(0, args.batch, args.mc_samples, config.latent_dim)))
            xt = torch.from_numpy(x)

            got = interleaved({"onnxruntime": partial(scorer.score, x),
                               "torch": partial(torch_eager, graph, xt, eps)},
                              args.batch, args.seconds)
            rows.append({"architecture": arch, "onnxruntime": got["onnxruntime"],
                         "torch_eager": got["torch"],
                         "speedup_best": got["onnxruntime"]["best"] / got["torch"]["best"],
                         "speedup_median": got["onnxruntime"]["median"] /
                         got["torch"]["median"]})
    result = {
        "date": time.strftime("%Y-%m-%d"), "input_dim": 784, "mc_samples": args.mc_samples,
        "batch": args.batch, "threads": args.threads, "seconds_per_measure": args.seconds,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "onnxruntime": ort.__version__, "results": rows,
        "note": "onnxruntime timing includes the Scorer's noise, p-values and thresholding; "
                "calls alternate between engines, best = least disturbed call",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"D=784  L={args.mc_samples}  batch={args.batch}  threads={args.threads}")
    print("samples/s, best call / median call (calls interleaved)")
    print(f"{'model':6s} {'onnxruntime':>18s} {'torch eager':>18s} {'speed-up':>14s}")
    for r in rows:
        o, t = r["onnxruntime"], r["torch_eager"]
        print(f"{r['architecture']:6s} {o['best']:8,.0f} / {o['median']:7,.0f} "
              f"{t['best']:8,.0f} / {t['median']:7,.0f} "
              f"{r['speedup_best']:5.2f}x / {r['speedup_median']:4.2f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
