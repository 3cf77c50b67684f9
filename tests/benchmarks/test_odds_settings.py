"""``benchmarks/odds.py`` takes ``anomaly train``'s settings as flags for ours: how a candidate
default is measured on the eleven tables. The flags parse to the config's types, the ones the
protocol fixes are refused, and a given setting reaches the bundle that is scored."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from anomaly.bundle import load_bundle
from tests.conftest import REPO


@pytest.fixture(scope="module")
def odds() -> ModuleType:
    spec = importlib.util.spec_from_file_location("odds_bench", REPO / "benchmarks" / "odds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["odds_bench"] = module  # the dataclasses of the module need it registered
    spec.loader.exec_module(module)
    return module


def test_settings_flags_parse_to_the_config_types(odds: ModuleType) -> None:
    args = odds.parse_args(["--beta", "0.5", "--hidden", "256,128", "--no-score-kl",
                            "--latent-dim", "16"])
    assert args.ours_settings == {"beta": 0.5, "hidden": (256, 128), "score_kl": False,
                                  "latent_dim": 16}
    assert odds.parse_args([]).ours_settings == {}


@pytest.mark.parametrize("flag", [["--reference", "local"], ["--device", "cpu"],
                                  ["--architecture", "conv"], ["--beta", "half"]])
def test_settings_the_protocol_fixes_are_refused(odds: ModuleType, flag: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        odds.parse_args(flag)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_a_given_setting_reaches_the_scored_bundle(odds: ModuleType, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(300, 4))
    x_test = np.vstack([rng.normal(size=(40, 4)), rng.normal(size=(10, 4)) + 6.0])
    scores, threshold, _ = odds.ours_scores(x_train, x_test, 0, tmp_path, epochs=3,
                                                overrides={"latent_dim": 3, "hidden": (16,)})
    manifest = load_bundle(tmp_path / "bundle").manifest
    assert manifest.model.latent_dim == 3
    assert scores.shape == (50,) and np.all(np.isfinite(scores)) and np.isfinite(threshold)
    assert scores[40:].min() > np.median(scores[:40])  # shifted rows score higher
    default = tmp_path / "default"
    odds.ours_scores(x_train, x_test, 0, default, epochs=3)
    assert load_bundle(default / "bundle").manifest.model.latent_dim == 8
