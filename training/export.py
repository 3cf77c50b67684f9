"""Export the reconstruction-probability graph to ONNX with dynamic batch (B) and samples (L)."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings

import onnx
import torch
from torch import nn

from training.vae import VAE, ReconstructionProbability

#: onnxruntime refuses models newer than the IR versions it knows; 10 is read by every
#: onnxruntime from 1.16 on and holds everything this graph uses.
MAX_IR_VERSION = 10
INPUT_NAMES = ["x", "eps"]
OUTPUT_NAMES = ["score", "feature_scores", "reconstruction"]


def export_onnx(vae: VAE, reference: nn.Module | None = None, kl: bool = False) -> bytes:
    """Serialised ONNX model of :class:`ReconstructionProbability` for this VAE (on CPU), with
    the reference likelihood inside the graph when one is given, and the KL term in the
    score with ``kl``."""
    ref = copy.deepcopy(reference).cpu().eval() if reference is not None else None
    graph = ReconstructionProbability(copy.deepcopy(vae).cpu().eval(), ref, kl=kl)
    x = torch.zeros(3, vae.input_dim)
    eps = torch.zeros(5, 3, vae.latent_dim)
    batch, samples = torch.export.Dim("B"), torch.export.Dim("L")
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink), torch.no_grad():
        warnings.simplefilter("ignore")
        for name in ("torch.onnx", "onnxscript", "torch.export"):
            logging.getLogger(name).setLevel(logging.ERROR)
        program = torch.onnx.export(
            graph, (x, eps), dynamo=True, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
            dynamic_shapes={"x": {0: batch}, "eps": {0: samples, 1: batch}}, verbose=False)
    assert program is not None
    model = program.model_proto
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    model.doc_string = ("vae-anomaly reconstruction probability: x (B, D), eps (L, B, d_z) -> "
                        "score (B,), feature_scores (B, D), reconstruction (B, D)")
    onnx.checker.check_model(model)
    return model.SerializeToString()
