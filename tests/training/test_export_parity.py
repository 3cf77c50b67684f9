"""The folded export gives the scores the plain export gave: the graph of
:class:`ReconstructionProbability` (the code that wrote every bundle before the folded graphs,
exported the same way) against :func:`export_graphs`' full and score-only graphs, on every kind
of likelihood block, MLP and conv, with and without the image reference."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from scipy.special import logsumexp

from training import bundle_graphs
from training.bundle_graphs import score_rows, score_unexported
from training.config import TrainConfig
from training.export import OUTPUT_NAMES, export_graphs, export_module
from training.likelihood import Likelihood
from training.reference import LocalReference
from training.vae import VAE, ReconstructionProbability, build_vae

RTOL = 1e-5
#: numeric and categorical columns interleaved (as a table's schema orders them), Bernoulli
MIXED = [("gaussian", 0, 3), ("categorical", 3, 6), ("gaussian", 6, 7), ("bernoulli", 7, 9),
         ("categorical", 9, 11), ("gaussian", 11, 12)]


def _mixed_x(rng: np.random.Generator, B: int) -> np.ndarray:
    x = rng.normal(size=(B, 12))
    x[:, 3:6] = np.eye(3)[rng.integers(0, 3, B)]
    x[:, 9:11] = np.eye(2)[rng.integers(0, 2, B)]
    x[:, 7:9] = rng.random((B, 2))
    return x.astype(np.float32)


def _case(name: str) -> tuple[VAE, torch.nn.Module | None]:
    torch.manual_seed(3)
    if name == "mixed":
        return build_vae(12, Likelihood(MIXED, 1e-3), "mlp", 3, (9, 5)), None
    if name == "mlp_gaussian":
        return build_vae(64, Likelihood.uniform("gaussian", 64, 0.1), "mlp", 4, (32, 16)), None
    shape = (1, 8, 8)
    if name == "conv_reference":
        ref = LocalReference(shape, np.array([[0.3, 0.3, -0.1, 0.2]]), np.array([0.05]),
                             np.array([0.1]))
        return build_vae(64, Likelihood.uniform("gaussian", 64, 0.1), "conv", 4,
                         image_shape=shape, conv_channels=(4, 8), dense=16), ref
    return build_vae(64, Likelihood.uniform("bernoulli", 64), "conv", 4, image_shape=shape,
                     conv_channels=(4, 8), dense=16), None


def vae_ref(ref: torch.nn.Module | None, x: np.ndarray) -> np.ndarray | None:
    """log p_ref(x) summed over features, (B,), or None without a reference."""
    if ref is None:
        return None
    with torch.no_grad():
        return ref(torch.from_numpy(x)).sum(-1).numpy().astype(np.float64)


def _sessions(vae: VAE, ref: torch.nn.Module | None) -> dict[str, ort.InferenceSession]:
    old = export_module(ReconstructionProbability(vae.eval(), ref), vae.input_dim,
                        vae.latent_dim, OUTPUT_NAMES, "the plain graph")
    new = export_graphs(vae, ref)
    return {name: ort.InferenceSession(b, providers=["CPUExecutionProvider"])
            for name, b in (("old", old), ("full", new.full), ("score", new.score))}


@pytest.mark.parametrize("name", [
    "mixed", "conv_reference",
    pytest.param("mlp_gaussian", marks=pytest.mark.slow),
    pytest.param("conv_bernoulli", marks=pytest.mark.slow)])
def test_folded_graphs_score_as_the_plain_graph(name: str) -> None:
    vae, ref = _case(name)
    # trained-looking weights: larger scale outputs and logits than a fresh init gives
    with torch.no_grad():
        for p in vae.parameters():
            p.mul_(3.0)
    s = _sessions(vae, ref)
    rng = np.random.default_rng(0)
    B = 29
    x = _mixed_x(rng, B) if name == "mixed" else (
        rng.normal(size=(B, 64)).astype(np.float32) if name == "mlp_gaussian"
        else rng.random((B, 64)).astype(np.float32))
    for L in (1, 2, 16):
        eps = rng.normal(size=(L, B, vae.latent_dim)).astype(np.float32)
        feed = {"x": x, "eps": eps}
        old, full, (score, log_w) = (s[k].run(None, feed) for k in ("old", "full", "score"))
        np.testing.assert_allclose(full[0], old[0], rtol=RTOL)
        np.testing.assert_allclose(full[1], old[1], rtol=RTOL, atol=1e-4)  # per feature
        np.testing.assert_allclose(full[2], old[2], rtol=RTOL, atol=1e-6)
        # the score-only graph computes the score with the same nodes: identical bits
        np.testing.assert_array_equal(score, full[0])
        np.testing.assert_array_equal(log_w, full[3])
        # the score is the log-mean-exp of the per-draw log-likelihoods (+ the reference)
        ref_sum = vae_ref(ref, x)
        np.testing.assert_allclose(
            np.log(L) - logsumexp(log_w.astype(np.float64), axis=0)
            + (0.0 if ref_sum is None else ref_sum), score, rtol=1e-5, atol=1e-4)


def test_score_only_graph_has_no_per_feature_work() -> None:
    import onnx

    vae, _ = _case("mlp_gaussian")
    graphs = export_graphs(vae)
    score, full = onnx.load_from_string(graphs.score), onnx.load_from_string(graphs.full)
    assert [o.name for o in score.graph.output] == ["score", "log_weights"]
    assert [o.name for o in full.graph.output] == [*OUTPUT_NAMES, "log_weights"]
    lse = [n for n in score.graph.node if n.op_type == "ReduceLogSumExp"]
    assert len(lse) == 1  # over L of the (L, B) sums only, none over (L, B, D)
    assert len(score.graph.node) < len(full.graph.node)


def test_pruned_score_graph_is_the_score_only_export() -> None:
    """The bundle's score graph, pruned from the full one, has the nodes a separate
    score-only export has and gives the same scores bit for bit."""
    from collections import Counter

    import onnx

    from training.export import SCORE_OUTPUT_NAMES, prune_to_outputs
    from training.scoring_graph import ScoringGraph

    vae, _ = _case("mixed")
    graphs = export_graphs(vae, kl=True)
    alone = export_module(ScoringGraph(vae.eval(), kl=True).eval(), 12, 3,
                          SCORE_OUTPUT_NAMES, "score only")
    ops = [Counter(n.op_type for n in onnx.load_from_string(g).graph.node)
           for g in (graphs.score, alone)]
    assert ops[0] == ops[1]
    rng = np.random.default_rng(4)
    feed = {"x": _mixed_x(rng, 64), "eps": rng.normal(size=(7, 64, 3)).astype(np.float32)}
    pruned, separate = (ort.InferenceSession(g, providers=["CPUExecutionProvider"]).run(
        None, feed) for g in (graphs.score, alone))
    np.testing.assert_array_equal(pruned[0], separate[0])
    np.testing.assert_array_equal(pruned[1], separate[1])
    with pytest.raises(ValueError, match="no outputs"):
        prune_to_outputs(onnx.load_from_string(graphs.full), ["nope"], "")


def test_extreme_scale_outputs_stay_exact() -> None:
    """softplus(t) for t far above the exp cap (80) is t, as the plain graph had it."""
    vae, _ = _case("mlp_gaussian")
    with torch.no_grad():
        vae.decoder.net[-1].bias[64:] = 200.0  # the scale head: variance ~ 200
    s = _sessions(vae, None)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 64)).astype(np.float32)
    eps = rng.normal(size=(3, 5, vae.latent_dim)).astype(np.float32)
    old, full = s["old"].run(None, {"x": x, "eps": eps}), s["full"].run(None, {"x": x, "eps": eps})
    assert np.all(np.isfinite(full[0]))
    np.testing.assert_allclose(full[0], old[0], rtol=RTOL)



@pytest.mark.parametrize("name", ["mixed", "conv_reference"])
def test_unexported_fold_models_score_as_their_graphs_would(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cross-fitting scores its fold models in torch, without export: the same scores and
    standard errors as the exported graphs give, chunked or not, with the KL term too."""
    vae, ref = _case(name)
    rng = np.random.default_rng(5)
    x = (_mixed_x(rng, 300) if name == "mixed"
         else rng.random((300, 64)).astype(np.float32))
    kl = name == "mixed"
    config = TrainConfig(latent_dim=vae.latent_dim, mc_samples=6)
    want, want_se = score_rows(export_graphs(vae, ref, kl=kl), x, config)
    got, got_se = score_unexported(vae, ref, x, config, kl=kl)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-4)
    np.testing.assert_allclose(got_se, want_se, rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(bundle_graphs, "TORCH_CHUNK", 128)  # three chunks, the last short
    chunked, _ = score_unexported(vae, ref, x, config, kl=kl)
    np.testing.assert_allclose(chunked, got, rtol=1e-6)
    with pytest.raises(ValueError, match="float32"):
        score_unexported(vae, ref, x, TrainConfig(precision="int8"), kl=kl)
