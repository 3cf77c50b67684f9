"""int8 scoring graphs: onnxruntime static quantization of the decoder's matrix products.

What is quantized, and why:

* **The decoder only** (every Gemm / MatMul / Conv that depends on ``eps``): it runs
  L times per sample and holds nearly all the FLOPs; the encoder runs once per sample, and
  keeping it in float32 means the input ``x`` itself is never rounded or clipped to the range
  seen in calibration, so an outlier still reaches the encoder as it is.
* **Static, QDQ format**: weights int8 per output channel, activations uint8 with scales
  fixed from the normal calibration data (min-max). Fixed scales keep a sample's score
  independent of its batch mates (dynamic quantization would scale each call by its own
  range). onnxruntime fuses each quantized Gemm into ``QGemm`` (u8 x s8, the VNNI path on
  AVX-512 CPUs; s8 x s8 ran 5.5x slower here on the MNIST MLP).
* **Float outputs**: the products' outputs are not re-quantized, so the mean and variance
  heads reach the likelihood in float32; only their inputs and weights are rounded.

Both graphs of a bundle are quantized with the same calibration batches, so their scores
agree as the float32 pair's do. The threshold is then calibrated on the int8 scores
(:func:`training.pipeline._train`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from anomaly.inference.noise import DEFAULT_SEED, latent_noise
from training.export import ExportedGraphs

#: Calibration rows per batch fed to onnxruntime's calibrator, and at most this many batches.
CALIBRATION_BATCH = 256
CALIBRATION_BATCHES = 8
#: onnxruntime's CPU provider has int8 kernels for these; a quantized ConvTranspose is only
#: dequantized again in front of the float32 kernel (checked in the optimized graph), so the
#: conv decoders' transposed convolutions stay float32 and only their dense layers go int8.
QUANTIZED_OPS = ("Gemm", "MatMul", "Conv")


def decoder_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the matrix-product nodes downstream of the ``eps`` input."""
    tainted = {"eps"}
    out = []
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        if tainted.intersection(node.input):
            tainted.update(node.output)
            if node.op_type in QUANTIZED_OPS:
                out.append(node.name)
    return out


def _batches(x: np.ndarray, latent_dim: int, mc_samples: int, noise: str
             ) -> Iterator[dict[str, np.ndarray]]:
    rows = min(x.shape[0], CALIBRATION_BATCH * CALIBRATION_BATCHES)
    for start in range(0, rows, CALIBRATION_BATCH):
        xb = np.ascontiguousarray(x[start:start + CALIBRATION_BATCH], dtype=np.float32)
        eps = latent_noise(DEFAULT_SEED + start, xb.shape[0], mc_samples, latent_dim, noise)
        yield {"x": xb, "eps": np.ascontiguousarray(eps)}


def quantize_graph(graph: bytes, x_calibration: np.ndarray, latent_dim: int, mc_samples: int,
                   noise: str = "iid") -> bytes:
    """One float32 scoring graph -> its int8 version (see the module doc)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = _batches(x_calibration, latent_dim, mc_samples, noise)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    model = onnx.load_from_string(graph)
    nodes = decoder_nodes(model)
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(graph)
        options: dict[str, Any] = {"OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)}
        sink = io.StringIO()
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs advice at INFO
        try:
            with contextlib.redirect_stdout(sink):
                quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=list(QUANTIZED_OPS),
                                nodes_to_quantize=nodes, per_channel=True,
                                weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                                extra_options=options)
        finally:
            logging.getLogger().setLevel(level)
        out = onnx.load(str(dst))
    out.doc_string = model.doc_string + " [int8: decoder statically quantized, u8 x s8]"
    return out.SerializeToString()


def quantize_graphs(graphs: ExportedGraphs, x_calibration: np.ndarray, latent_dim: int,
                    mc_samples: int, noise: str = "iid") -> ExportedGraphs:
    """Both graphs of a bundle, quantized with the same calibration batches."""
    return ExportedGraphs(
        quantize_graph(graphs.full, x_calibration, latent_dim, mc_samples, noise),
        quantize_graph(graphs.score, x_calibration, latent_dim, mc_samples, noise))
