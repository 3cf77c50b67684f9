"""The core and the CLI's start-up never import torch (it is an optional, heavy extra)."""

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
