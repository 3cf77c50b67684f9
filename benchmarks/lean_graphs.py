"""Reference graphs for benchmarks/scoring.py, written by hand with onnx.helper: the machine's
MatMul peak, and for a trained VAE the leanest graph of its score that we know how to write.

The lean graph is what a person would write for one model with nothing but the score in
mind: its networks as Gemm/Conv nodes, the decoder's last layer as one Gemm sliced into
mean and scale, ``log(1 + exp(t))`` for softplus (no overflow guard), one slice and one
log-sum-exp per categorical column, and the score ``log L - logsumexp_l sum_j log p``. It is
the yardstick the bundle's graph is measured against, not a product path; its scores are
checked against the bundle's before it is timed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from training.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from training.reference import LocalReference
from training.vae import VAE

OPSET = 18


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def module(self, m: nn.Module, h: str) -> str:
        """One torch layer (or a Sequential of them) as ONNX nodes."""
        if isinstance(m, nn.Sequential):
            for sub in m:
                h = self.module(sub, h)
            return h
        if isinstance(m, nn.Linear):
            assert m.bias is not None
            return self.op("Gemm", h, self.const(m.weight.detach().numpy()),
                           self.const(m.bias.detach().numpy()), transB=1)
        if isinstance(m, nn.LeakyReLU):
            return self.op("LeakyRelu", h, alpha=float(m.negative_slope))
        if isinstance(m, nn.Flatten):
            return self.op("Flatten", h, axis=1)
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            assert m.bias is not None
            k, s, p = m.kernel_size, m.stride, m.padding
            return self.op("Conv" if isinstance(m, nn.Conv2d) else "ConvTranspose", h,
                           self.const(m.weight.detach().numpy()),
                           self.const(m.bias.detach().numpy()), kernel_shape=list(k),
                           strides=list(s), pads=[p[0], p[1], p[0], p[1]],  # type: ignore[index]
                           group=m.groups)
        raise TypeError(f"no lean ONNX for {type(m).__name__}")

    def softplus(self, t: str) -> str:
        return self.op("Log", self.op("Add", self.op("Exp", t), self.const(1.0)))


def lean_score_graph(vae: VAE, reference: LocalReference | None = None) -> bytes:
    """x (B, D), eps (L, B, d_z) -> score (B,) for this VAE, lean (see the module doc)."""
    g = _Builder()
    D, dz = vae.input_dim, vae.latent_dim
    enc, dec, lik = vae.encoder, vae.decoder, vae.likelihood
    if isinstance(enc, MLPEncoder):
        h = g.module(enc.net, "x")
    else:
        assert isinstance(enc, ConvEncoder)
        img = g.op("Reshape", "x", g.const([-1, *enc.shape], np.int64))
        h = g.module(enc.head, g.module(enc.features, img))
    mu = g.op("Slice", h, g.const([0], np.int64), g.const([dz], np.int64), g.const([1], np.int64))
    logvar = g.op("Slice", h, g.const([dz], np.int64), g.const([2 * dz], np.int64),
                  g.const([1], np.int64))
    sigma = g.op("Exp", g.op("Mul", logvar, g.const(0.5)))
    z = g.op("Add", mu, g.op("Mul", sigma, "eps"))  # (L, B, d_z)
    z2 = g.op("Reshape", z, g.const([-1, dz], np.int64))
    if isinstance(dec, MLPDecoder):
        out = g.module(dec.net, z2)
    else:
        assert isinstance(dec, ConvDecoder)
        grid = g.op("Reshape", g.module(dec.dense, z2), g.const([-1, *dec.grid], np.int64))
        out = g.module(dec.deconv, grid)
    heads = 2 if lik.needs_scale else 1
    shape = g.op("Concat", g.op("Slice", g.op("Shape", "eps"), g.const([0], np.int64),
                                g.const([2], np.int64)), g.const([heads * D], np.int64), axis=0)
    out3 = g.op("Reshape", out, shape)  # (L, B, heads * D)

    def cut(t: str, a: int, b: int) -> str:
        return g.op("Slice", t, g.const([a], np.int64), g.const([b], np.int64),
                    g.const([2], np.int64))

    def xcut(a: int, b: int) -> str:
        return "x" if (a, b) == (0, D) else g.op(
            "Slice", "x", g.const([a], np.int64), g.const([b], np.int64), g.const([1], np.int64))

    sums: list[str] = []
    for kind, a, b in lik.blocks:
        loc = out3 if heads == 1 and (a, b) == (0, D) else cut(out3, a, b)
        xs = xcut(a, b)
        if kind == "gaussian":
            var = g.op("Add", g.softplus(cut(out3, D + a, D + b)), g.const(lik.var_floor))
            d = g.op("Sub", xs, loc)
            e = g.op("Add", g.op("Log", var), g.op("Div", g.op("Mul", d, d), var))
            s = g.op("Add", g.op("Mul", g.op("ReduceSum", e, g.const([2], np.int64),
                                             keepdims=0), g.const(-0.5)),
                     g.const(-0.5 * math.log(2 * math.pi) * (b - a)))
        elif kind == "bernoulli":
            ll = g.op("Sub", g.op("Mul", xs, loc), g.softplus(loc))
            s = g.op("ReduceSum", ll, g.const([2], np.int64), keepdims=0)
        else:
            lse = g.op("ReduceLogSumExp", loc, g.const([2], np.int64), keepdims=1)
            s = g.op("ReduceSum", g.op("Mul", xs, g.op("Sub", loc, lse)), g.const([2], np.int64),
                     keepdims=0)
        sums.append(s)
    total = sums[0]
    for s in sums[1:]:
        total = g.op("Add", total, s)  # (L, B)
    n = g.op("Cast", g.op("Slice", g.op("Shape", "eps"), g.const([0], np.int64),
                          g.const([1], np.int64)), to=TensorProto.FLOAT)
    score = g.op("Sub", g.op("Log", g.op("Squeeze", n)),
                 g.op("ReduceLogSumExp", total, g.const([0], np.int64), keepdims=0))
    if reference is not None:
        c, hh, ww = reference.shape
        img = g.op("Reshape", "x", g.const([-1, c, hh, ww], np.int64))
        pred = g.op("Conv", img, g.const(reference.kernel.numpy()),
                    g.const(reference.bias.numpy()), kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                    group=c)
        var = reference.variance.numpy().reshape(1, c, 1, 1)
        d = g.op("Sub", img, pred)
        ll = g.op("Add", g.op("Mul", g.op("Mul", d, d), g.const(-0.5 / var)),
                  g.const(-0.5 * (math.log(2 * math.pi) + np.log(var))))
        ref = g.op("ReduceSum", g.op("Reshape", ll, g.const([0, -1], np.int64)),
                   g.const([1], np.int64), keepdims=0)
        score = g.op("Add", score, ref)
    g.nodes.append(helper.make_node("Identity", [score], ["score"]))
    graph = helper.make_graph(
        g.nodes, "lean_score",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", D]),
         helper.make_tensor_value_info("eps", TensorProto.FLOAT, ["L", "B", dz])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["B"])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def matmul_graph(n: int) -> bytes:
    """A (n, n) @ W (n, n): the GEMM onnxruntime runs best, for the machine's peak."""
    w = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["y"])], "peak",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    return model.SerializeToString()


def gemm_flops(vae: VAE) -> tuple[float, float]:
    """(FLOPs per sample in the encoder, per latent draw in the decoder) of the GEMMs and
    convolutions: 2 * multiply-adds, measured on the torch modules with hooks."""
    counts = {"now": 0.0}

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(m, nn.Linear):
            counts["now"] += 2.0 * m.in_features * m.out_features
        elif isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            counts["now"] += 2.0 * m.in_channels // m.groups * m.out_channels * k * \
                out.shape[2] * out.shape[3]
        elif isinstance(m, nn.ConvTranspose2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            x = inputs[0]
            counts["now"] += 2.0 * m.in_channels * m.out_channels * k * x.shape[2] * x.shape[3]

    handles = [m.register_forward_hook(hook) for m in vae.modules()
               if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d)]
    try:
        with torch.no_grad():
            vae.encoder(torch.zeros(1, vae.input_dim))
            enc, counts["now"] = counts["now"], 0.0
            vae.decoder(torch.zeros(1, vae.latent_dim))
            dec = counts["now"]
    finally:
        for handle in handles:
            handle.remove()
    return enc, dec
