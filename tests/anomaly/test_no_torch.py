"""The core and the CLI's start-up never import torch (it is an optional, heavy extra), nor
matplotlib before a figure is drawn."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("code", [
    "import anomaly, anomaly.inference.scorer, anomaly.batch, anomaly.evaluation",
    "from anomaly.cli import build_parser; build_parser()",  # loads the command plugins
])
def test_torch_is_not_imported(code: str) -> None:
    probe = f"{code}; import sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_matplotlib_waits_for_the_first_figure() -> None:
    """Every command's start-up would pay ~0.45 s for it; only figures need it."""
    probe = ("from anomaly.cli import build_parser; build_parser(); import anomaly.plots, sys; "
             "print('matplotlib' in sys.modules); anomaly.plots.heatmap_png(__import__('numpy')"
             ".ones((4, 4))); print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]
