"""Pay only for what is asked: plain scoring runs the score-only graph, explanations the full
one, and both agree; bundles that hold only the full graph score as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from anomaly.bundle import load_bundle
from anomaly.errors import BundleError
from anomaly.inference import Scorer
from anomaly.inference.graph import CHUNK_FLOATS

GOLDEN = Path(__file__).resolve().parents[2] / "golden"


def _x(scorer: Scorer, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, scorer.input_dim)).astype(np.float32)


def test_new_bundles_hold_a_score_only_graph(tabular_bundle: Path) -> None:
    bundle = load_bundle(tabular_bundle)
    assert bundle.score_model_path is not None and bundle.score_model_path.is_file()
    scorer = Scorer(bundle)
    assert scorer.graph.score_only
    assert scorer.graph._full is None  # the full graph's session is made on first explain


def test_lazy_and_eager_explanations_agree(tabular_bundle: Path) -> None:
    scorer = Scorer(tabular_bundle)
    x = _x(scorer, 40)
    seeds = list(range(40))
    lazy = scorer.score(x, seeds)
    eager = scorer.score(x, seeds, explain=True)
    np.testing.assert_array_equal(lazy.scores, eager.scores)
    np.testing.assert_allclose(lazy.feature_scores, eager.feature_scores, rtol=1e-6)
    np.testing.assert_allclose(lazy.reconstruction, eager.reconstruction, rtol=1e-6)
    # a row's explanation does not depend on the rows it was scored with
    part = lazy.rows(10, 20)
    assert len(part) == 10
    np.testing.assert_allclose(part.feature_scores, eager.feature_scores[10:20], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(part.scores, eager.scores[10:20])


def test_explaining_later_sees_the_input_as_it_was(tabular_bundle: Path) -> None:
    scorer = Scorer(tabular_bundle)
    x = _x(scorer, 8)
    want = scorer.score(x, explain=True).feature_scores
    result = scorer.score(x)
    x[:] = 99.0  # the caller reuses its buffer
    np.testing.assert_allclose(result.feature_scores, want, rtol=1e-6)


def test_bundles_without_a_score_graph_score_with_the_full_one(tmp_path: Path) -> None:
    scorer = Scorer(GOLDEN / "sensors")
    assert scorer.bundle.score_model_path is None and not scorer.graph.score_only
    r = scorer.score(_x(scorer, 5))
    assert r.scores.shape == (5,) and r.feature_scores.shape == (5, scorer.input_dim)


def test_the_score_graph_is_hash_checked(tabular_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(tabular_bundle, copy)
    (copy / "score.onnx").write_bytes((copy / "score.onnx").read_bytes() + b"\0")
    with pytest.raises(BundleError, match=r"score.onnx does not match the sha256"):
        load_bundle(copy)
    (copy / "score.onnx").unlink()
    with pytest.raises(BundleError, match=r"score\.onnx is missing"):
        load_bundle(copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    assert manifest["files"]["score_model"] == "score.onnx"


def test_chunked_calls_give_the_scores_of_small_ones(tabular_bundle: Path) -> None:
    scorer = Scorer(tabular_bundle, mc_samples=64)
    step = scorer.graph.chunk_rows(64)
    assert step == CHUNK_FLOATS // (64 * scorer.input_dim)
    x = _x(scorer, 2 * step + 3)
    whole = scorer.score(x, seeds=list(range(x.shape[0]))).scores
    one = np.concatenate([scorer.score(x[i:i + 7], seeds=list(range(i, min(i + 7, len(x)))))
                          .scores for i in range(0, len(x), 7)])
    np.testing.assert_allclose(whole, one, rtol=1e-5, atol=1e-5)
