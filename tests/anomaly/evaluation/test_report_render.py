"""The HTML report as a browser shows it: headless Chromium (Debian ``chromium``, which
.ci/tools.sh installs) loads the page from disk, offline, and a probe script added to a copy
of it counts the images that decoded (``complete`` and ``naturalWidth > 0``) once the page
has loaded; a screenshot of the page must not be blank."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.anomaly.evaluation.conftest import Made

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const ok = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-images", ok + "/" + images.length);
});
</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium not found: install the Debian package 'chromium' "
                    "(.ci/tools.sh does)")
    return path


def browse(chromium: str, page: Path, tmp_path: Path, *args: str) -> str:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    res = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args,
                          page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def loaded_images(chromium: str, page_text: str, tmp_path: Path) -> tuple[int, int]:
    probed = tmp_path / "probed.html"
    probed.write_text(page_text.replace("</body>", PROBE + "</body>"))
    dom = browse(chromium, probed, tmp_path, "--dump-dom")
    match = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert match, "the probe did not run: the page did not finish loading"
    return int(match.group(1)), int(match.group(2))


@pytest.mark.parametrize(("which", "n_images"), [("table", 5), ("image", 9)])
def test_report_renders_with_every_image_loaded(
        which: str, n_images: int, chromium: str, table_report: Made, image_report: Made,
        tmp_path: Path) -> None:
    made = table_report if which == "table" else image_report
    text = made.page.path.read_text()
    assert loaded_images(chromium, text, tmp_path) == (n_images, n_images)
    shot = tmp_path / "shot.png"
    browse(chromium, made.page.path, tmp_path, "--window-size=1200,2400", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2400, 1200) and pixels.std() > 10  # text and figures, not blank


def test_the_probe_notices_a_broken_image(chromium: str, image_report: Made,
                                          tmp_path: Path) -> None:
    text = image_report.page.path.read_text()
    broken = text.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA", 1)
    assert broken != text
    assert loaded_images(chromium, broken, tmp_path) == (8, 9)
