"""Regenerate the golden bundles and expected outputs that pin scores across refactors.

Run from the repository root: ``python tests/golden/make_golden.py``. It trains two tiny
bundles (a tabular one with numeric and categorical columns, an 8x8 image one scored by the
likelihood ratio), writes fixed inputs beside them, and records what the library, the batch
CLI and the service answer for those inputs in ``expected.json`` / ``expected_*.csv``.
Regenerate only when a change is *meant* to alter scores, and say so in the commit.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import make_tabular  # noqa: E402


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def train() -> None:
    from sklearn.datasets import load_digits

    from training import image_config, tabular_config, train_images, train_tabular

    cols = make_tabular(600, seed=3)
    cols.pop("is_anomaly")
    cols["site"] = np.array(["a", "b", "c"] * 200, dtype=object)
    train_tabular(cols, HERE / "sensors", "sensors",
                  tabular_config(epochs=6, hidden=(16, 8), latent_dim=3, target_fpr=0.05,
                                 mc_samples=8, progress=False))
    from anomaly.bundle import ImageInput

    digits = load_digits()
    keep = digits.target != 7
    images = (digits.images[keep] / 16.0).astype(np.float32)[:, None]
    schema = ImageInput(height=8, width=8, channels=1, scale=255.0)
    train_images(images[:800], schema, HERE / "digits", "digits",
                 image_config(schema, epochs=3, architecture="mlp", hidden=(16, 8),
                              latent_dim=4, target_fpr=0.05, mc_samples=6, progress=False))


def inputs() -> None:
    from sklearn.datasets import load_digits

    cols = make_tabular(40, seed=11, anomalies=6)
    lines = ["id,f0,f1,f2,f3,f4,f5,color,site"]
    sites = ["a", "b", "c", "zzz"]  # zzz: an unseen category
    for i in range(40):
        vals = ",".join(f"{cols[f'f{j}'][i]:.6f}" for j in range(6))
        lines.append(f"r{i},{vals},{cols['color'][i]},{sites[i % 4]}")
    lines.append("bad1,1.0,oops,0,0,0,0,red,a")  # not a number
    lines.append("bad2,1.0,,0,0,0,0,red,a")  # missing
    lines.append('"quoted, id",0.1,0.2,0.3,0.4,0.5,0.6,blue,b')
    (HERE / "sensors_rows.csv").write_text("\n".join(lines) + "\n")
    digits = load_digits()
    folder = HERE / "digit_images"
    shutil.rmtree(folder, ignore_errors=True)
    for sub, digit in (("normal", 3), ("anomalous", 7)):
        (folder / sub).mkdir(parents=True)
        idx = np.flatnonzero(digits.target == digit)[:4]
        for i in idx:
            (folder / sub / f"{i:04d}.png").write_bytes(
                _png(np.round(digits.images[i] * 255 / 16)))
    (folder / "broken.png").write_bytes(b"not an image")


def expected() -> None:
    import pyarrow.csv as pacsv

    from anomaly import Scorer
    from anomaly.batch.sources import read_table, table_columns

    out: dict[str, object] = {}
    sensors = Scorer(HERE / "sensors")
    table = table_columns(read_table(HERE / "sensors_rows.csv"))
    good = {k: v[:40] for k, v in table.items()}
    for name, kwargs in (("default", {}), ("seeds", {"seeds": list(range(40))}),
                         ("mc3", {"mc_samples": 3})):
        r = sensors.score_rows(good, **kwargs)
        out[f"sensors_{name}"] = {
            "scores": r.scores.tolist(), "p_values": r.p_values.tolist(),
            "is_anomaly": r.is_anomaly.tolist(),
            "feature_scores_sum": r.feature_scores.sum(axis=1).tolist(),
            "reconstruction_sum": r.reconstruction.sum(axis=1).tolist()}
    r = sensors.score_rows(good)
    out["sensors_top3"] = [[[c, v] for c, v in row] for row in sensors.top_columns(r, 3)]
    digits = Scorer(HERE / "digits")
    files = sorted((HERE / "digit_images").glob("*/*.png"))
    r = digits.score_images([f.read_bytes() for f in files])
    out["digits"] = {"files": [f.relative_to(HERE / "digit_images").as_posix() for f in files],
                     "scores": r.scores.tolist(), "p_values": r.p_values.tolist(),
                     "is_anomaly": r.is_anomaly.tolist(),
                     "heatmap_sum": digits.heatmaps(r).sum(axis=(1, 2)).tolist(),
                     "reconstruction_sum": r.reconstruction.sum(axis=1).tolist()}
    (HERE / "expected.json").write_text(json.dumps(out, indent=1) + "\n")
    env_cmd = [sys.executable, "-m", "anomaly", "score"]
    for args, name in (([HERE / "sensors", HERE / "sensors_rows.csv", "--explain", "2",
                         "--id-column", "id"], "sensors"),
                       ([HERE / "digits", HERE / "digit_images"], "digits")):
        target = HERE / f"expected_{name}.csv"
        subprocess.run([*env_cmd, *map(str, args), "--out", str(target), "--quiet"],
                       check=True, cwd=REPO)
    pacsv.read_csv(HERE / "expected_sensors.csv")  # readable


if __name__ == "__main__":
    train()
    inputs()
    expected()
    for p in sorted(HERE.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:8d} {p.relative_to(HERE)}")
