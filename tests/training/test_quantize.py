"""int8 bundles: only the decoder's products quantized, statically; scores close to float32,
independent of batch mates, the threshold calibrated on the int8 scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from anomaly.bundle import load_bundle
from anomaly.calibration.metrics import auroc
from anomaly.inference import Scorer
from tests.conftest import make_tabular


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from training.pipeline import tabular_config, train_tabular

    cols = make_tabular(2500, seed=0)
    cols.pop("is_anomaly")
    root = tmp_path_factory.mktemp("int8")
    out = []
    for precision in ("fp32", "int8"):
        train_tabular(cols, root / precision, precision,
                      tabular_config(epochs=8, target_fpr=0.05, progress=False,
                                     precision=precision))
        out.append(root / precision)
    return out[0], out[1]


def test_int8_bundle_is_recorded_and_recalibrated(pair: tuple[Path, Path]) -> None:
    fp32, int8 = (load_bundle(p) for p in pair)
    assert fp32.manifest.model.precision == "fp32" and int8.manifest.model.precision == "int8"
    # the same fit (seeded), scored by different graphs: close but not equal calibrations
    assert not np.array_equal(fp32.calibration_scores, int8.calibration_scores)
    # absolute error near the bulk, relative in the far tail (a 24-nat outlier moves ~2%)
    np.testing.assert_allclose(int8.calibration_scores, fp32.calibration_scores, atol=0.5,
                               rtol=0.03)
    assert int8.threshold == pytest.approx(float(np.quantile(
        int8.calibration_scores, 1 - 0.05)), abs=0.2)
    for path in (int8.model_path, int8.score_model_path):
        assert path is not None
        model = onnx.load(str(path))
        ops = [n.op_type for n in model.graph.node]
        assert ops.count("QuantizeLinear") >= 3  # the decoder's inputs and weights
        gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
        quantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
        # encoder products stay float32: their inputs are never a dequantized tensor
        assert any(not quantized.intersection(n.input) for n in gemms)


def test_int8_scores_follow_fp32_and_ignore_batch_mates(pair: tuple[Path, Path]) -> None:
    fp32, int8 = (Scorer(p) for p in pair)
    cols = make_tabular(200, seed=6, anomalies=20)
    labels = cols.pop("is_anomaly").astype(bool)
    a, b = fp32.score_rows(cols), int8.score_rows(cols)
    assert np.corrcoef(a.scores, b.scores)[0, 1] > 0.999
    # flags mostly agree, and the ranking of anomalies holds
    assert np.mean(a.is_anomaly == b.is_anomaly) > 0.97
    assert auroc(b.scores, labels) > auroc(a.scores, labels) - 0.01
    alone = np.array([int8.score_rows({k: v[i:i + 1] for k, v in cols.items()}).scores[0]
                      for i in range(0, 200, 37)])
    np.testing.assert_allclose(alone, b.scores[::37], rtol=1e-5, atol=1e-5)
    lazy = int8.score_rows(cols)
    eager = int8.score(int8.tabular.transform(cols).x, explain=True)
    np.testing.assert_array_equal(lazy.scores, eager.scores)  # both graphs alike
