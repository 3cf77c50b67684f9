"""Export the scoring graphs to ONNX with dynamic batch (B) and samples (L).

A bundle holds two graphs of one model (:mod:`training.scoring_graph`): ``model.onnx``, the
full graph (score, feature_scores, reconstruction) that explanations and heat maps read, and
``score.onnx``, the score alone, which is what plain scoring runs. Their ``score`` outputs are
computed by the same nodes, so the score graph is the full graph pruned to the nodes its two
outputs need (:func:`prune_to_outputs`): one export per model instead of two, about 3 s of a
small table's training time."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from dataclasses import dataclass

import onnx
import torch
from torch import nn

from training.scoring_graph import ScoringGraph
from training.vae import VAE

#: onnxruntime refuses models newer than the IR versions it knows; 10 is read by every
#: onnxruntime from 1.16 on and holds everything this graph uses.
MAX_IR_VERSION = 10
INPUT_NAMES = ["x", "eps"]
#: The outputs of the plain graph (:class:`~training.vae.ReconstructionProbability`), which
#: the full graph's first three outputs equal.
OUTPUT_NAMES = ["score", "feature_scores", "reconstruction"]
#: (L, B) per-draw log-likelihoods, the last output of both folded graphs.
LOG_WEIGHTS = "log_weights"
FULL_OUTPUT_NAMES = [*OUTPUT_NAMES, LOG_WEIGHTS]
SCORE_OUTPUT_NAMES = ["score", LOG_WEIGHTS]


@dataclass(frozen=True)
class ExportedGraphs:
    """Serialised ONNX models: ``full`` (all outputs) and ``score`` (the score only)."""

    full: bytes
    score: bytes


def export_module(module: nn.Module, input_dim: int, latent_dim: int,
                  output_names: list[str], doc: str) -> bytes:
    """Serialised ONNX of ``module(x (B, D), eps (L, B, d_z))`` with B and L dynamic."""
    x = torch.zeros(3, input_dim)
    eps = torch.zeros(5, 3, latent_dim)
    batch, samples = torch.export.Dim("B"), torch.export.Dim("L")
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink), torch.no_grad():
        warnings.simplefilter("ignore")
        for name in ("torch.onnx", "onnxscript", "torch.export"):
            logging.getLogger(name).setLevel(logging.ERROR)
        program = torch.onnx.export(
            module, (x, eps), dynamo=True, input_names=INPUT_NAMES, output_names=output_names,
            dynamic_shapes={"x": {0: batch}, "eps": {0: samples, 1: batch}}, verbose=False)
    assert program is not None
    model = program.model_proto
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    model.doc_string = doc
    onnx.checker.check_model(model)
    return model.SerializeToString()


def prune_to_outputs(model: onnx.ModelProto, outputs: list[str], doc: str) -> onnx.ModelProto:
    """``model`` keeping only ``outputs`` and the nodes and initializers they are computed
    from (same inputs, same node order, so the same arithmetic in the same precision)."""
    graph = model.graph
    missing = sorted(set(outputs) - {o.name for o in graph.output})
    if missing:
        raise ValueError(f"graph has no outputs {missing}")
    by_output = {name: node for node in graph.node for name in node.output}
    needed: set[str] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = by_output.get(name)
        if node is not None:
            stack.extend(n for n in node.input if n)
    kept = [node for node in graph.node if any(n in needed for n in node.output)]
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    pruned.doc_string = doc
    del pruned.graph.node[:]
    pruned.graph.node.extend(kept)
    for field, keep in (("output", lambda v: v.name in outputs),
                        ("initializer", lambda v: v.name in needed),
                        ("value_info", lambda v: v.name in needed)):
        values = [v for v in getattr(graph, field) if keep(v)]
        del getattr(pruned.graph, field)[:]
        getattr(pruned.graph, field).extend(values)
    onnx.checker.check_model(pruned)
    return pruned


_FULL_DOC = ("vae-anomaly reconstruction probability: x (B, D), eps (L, B, d_z) -> score (B,), "
             "feature_scores (B, D), reconstruction (B, D), log_weights (L, B)")
_SCORE_DOC = ("vae-anomaly reconstruction probability, score only: x (B, D), eps (L, B, d_z) "
              "-> score (B,), log_weights (L, B)")


def _full_graph(vae: VAE, reference: nn.Module | None, kl: bool,
                latent_prior: nn.Module | None) -> bytes:
    ref = copy.deepcopy(reference).cpu().eval() if reference is not None else None
    prior = copy.deepcopy(latent_prior).cpu().eval() if latent_prior is not None else None
    model = copy.deepcopy(vae).cpu().eval()
    return export_module(
        ScoringGraph(model, ref, explain=True, kl=kl, latent_prior=prior).eval(),
        vae.input_dim, vae.latent_dim, FULL_OUTPUT_NAMES, _FULL_DOC)


def export_graphs(vae: VAE, reference: nn.Module | None = None, kl: bool = False,
                  latent_prior: nn.Module | None = None) -> ExportedGraphs:
    """Both scoring graphs of this VAE (on CPU), with the reference likelihood inside them
    when one is given, and KL(q(z|x) || p(z)) added to the score with ``kl`` (the
    ``free_energy`` score kind), or with ``kl`` and a ``latent_prior`` the code's weighted
    divergence from the fitted rows' codes (``aggregate_free_energy``)."""
    full = _full_graph(vae, reference, kl, latent_prior)
    score = prune_to_outputs(onnx.load_from_string(full), SCORE_OUTPUT_NAMES, _SCORE_DOC)
    return ExportedGraphs(full, score.SerializeToString())


def export_onnx(vae: VAE, reference: nn.Module | None = None, kl: bool = False,
                latent_prior: nn.Module | None = None) -> bytes:
    """The full graph alone (score, feature_scores, reconstruction, log_weights)."""
    return _full_graph(vae, reference, kl, latent_prior)
