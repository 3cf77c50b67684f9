import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from anomaly.bundle import load_bundle
from anomaly.errors import BundleError
from anomaly.inference import Scorer


@pytest.fixture
def bundle_copy(tabular_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tabular_bundle, tmp_path / "copy"))


def test_bundle_holds_what_a_scorer_needs(tabular_bundle: Path) -> None:
    b = load_bundle(tabular_bundle)
    m = b.manifest
    assert {p.name for p in tabular_bundle.iterdir()} >= {
        "bundle.json", "model.onnx", "calibration_scores.npy", "training_curve.png",
        "calibration_histogram.png"}
    assert m.kind == "tabular" and m.model.likelihood == "mixed"
    assert [c.name for c in m.input.columns] == ["f0", "f1", "f2", "f3", "f4", "f5", "color"]
    assert np.all(np.diff(b.calibration_scores) >= 0)
    assert b.calibration_scores.size == m.threshold.calibration_size == m.training.rows_holdout
    assert m.threshold.fpr_ci[0] <= m.threshold.fpr_estimate <= m.threshold.fpr_ci[1]
    assert m.training.data_fingerprint.startswith("sha256:")
    assert "torch" in m.training.versions and "onnxruntime" in m.training.versions


def test_missing_directory_and_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no model bundle"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match=r"bundle\.json is missing"):
        load_bundle(tmp_path)


def test_hash_mismatch_is_refused(bundle_copy: Path) -> None:
    with (bundle_copy / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="does not match the sha256"):
        load_bundle(bundle_copy)


def test_newer_schema_is_refused(bundle_copy: Path) -> None:
    raw = json.loads((bundle_copy / "bundle.json").read_text())
    raw["schema_version"] = 99
    (bundle_copy / "bundle.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="newer than this library reads"):
        load_bundle(bundle_copy)


def test_invalid_manifest_names_the_field(bundle_copy: Path) -> None:
    raw = json.loads((bundle_copy / "bundle.json").read_text())
    raw["threshold"]["target_fpr"] = 3
    (bundle_copy / "bundle.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"threshold\.target_fpr"):
        load_bundle(bundle_copy)
    (bundle_copy / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)


def test_missing_calibration(bundle_copy: Path) -> None:
    (bundle_copy / "calibration_scores.npy").unlink()
    with pytest.raises(BundleError, match=r"calibration_scores\.npy is missing"):
        load_bundle(bundle_copy)


def test_scorer_is_deterministic_and_batch_invariant(tabular_bundle: Path) -> None:
    from tests.conftest import make_tabular

    scorer = Scorer(tabular_bundle)
    cols = make_tabular(300, seed=9)
    full = scorer.score_rows(cols)
    single = [scorer.score_rows({k: v[i : i + 1] for k, v in cols.items()}).scores[0]
              for i in range(0, 300, 37)]
    np.testing.assert_allclose(full.scores[::37], single, rtol=1e-5)
    again = scorer.score_rows(cols)
    np.testing.assert_array_equal(full.scores, again.scores)
    other_seed = scorer.score_rows(cols, seeds=5)
    assert not np.allclose(full.scores, other_seed.scores)
    assert full.feature_scores.shape == full.reconstruction.shape == (300, 9)


def test_a_schema_v1_bundle_is_read_with_its_score_kind() -> None:
    """v1 kept the score kind in the free-form config; v2 has a typed field."""
    golden = Path(__file__).resolve().parents[2] / "golden"
    for name, kind in (("sensors", "reconstruction_probability"),
                       ("digits", "likelihood_ratio")):
        raw = json.loads((golden / name / "bundle.json").read_text())
        assert raw["schema_version"] == 1 and raw["model"]["config"]["score"] == kind
        manifest = load_bundle(golden / name).manifest
        assert manifest.model.score == kind and "score" not in manifest.model.config


def test_rewriting_a_bundle_replaces_it_whole(tabular_bundle: Path, tmp_path: Path) -> None:
    from anomaly.bundle import write_bundle

    b = load_bundle(tabular_bundle)
    target = tmp_path / "b"
    onnx = b.model_path.read_bytes()
    write_bundle(target, b.manifest, onnx, b.calibration_scores, {"note.png": b"x"})
    write_bundle(target, b.manifest, onnx, b.calibration_scores[:10])
    again = load_bundle(target)
    assert again.calibration_scores.size == 10 and not (target / "note.png").exists()
    assert again.manifest.schema_version == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporaries left
