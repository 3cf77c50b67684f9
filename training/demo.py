"""``anomaly demo``: train and evaluate on data that ships inside scikit-learn.

1. Breast-cancer table: train on benign rows, find malignant ones among held-out rows.
2. 8x8 digits as PNG files: train on nine digits, find the tenth; heat maps of the top hits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anomaly import plots
from anomaly.batch import write_table
from anomaly.batch.sources import iter_image_files
from anomaly.evaluation import evaluate_path
from anomaly.inference import Scorer
from training.datasets import breast_cancer, load_image_folder, write_digits_folders
from training.pipeline import image_config, tabular_config, train_images, train_tabular

#: The digit held out as the anomaly in the image demo.
DEMO_ANOMALY_DIGIT = 7


def run_demo(out: Path, quick: bool = False, progress: bool = True) -> dict[str, float]:
    """Run both demos under ``out``; returns {demo: test AUROC} and prints a summary."""
    import pyarrow as pa

    out.mkdir(parents=True, exist_ok=True)
    epochs = {"epochs": 40, "kl_warmup_epochs": 5} if quick else {}
    results: dict[str, float] = {}

    print("== 1/2 breast cancer (tabular): benign rows are normal, malignant are anomalies")
    table = breast_cancer()
    data_dir = out / "data"
    data_dir.mkdir(exist_ok=True)
    test_csv = write_table(pa.table(table.test), data_dir / "breast_cancer_test.csv")
    train_tabular(table.train, out / "models" / "breast_cancer", "breast_cancer",
                  tabular_config(progress=progress, **epochs))
    report = evaluate_path(out / "models" / "breast_cancer", test_csv, "is_anomaly",
                           out / "evaluation-breast_cancer")
    print(report.describe())
    results["breast_cancer"] = report.auroc

    print(f"\n== 2/2 digits (8x8 images): digit {DEMO_ANOMALY_DIGIT} is the anomaly")
    train_dir, test_dir = write_digits_folders(data_dir / "digits", DEMO_ANOMALY_DIGIT)
    images, schema = load_image_folder(train_dir, progress=progress)
    train_images(images, schema, out / "models" / "digits", "digits",
                 image_config(schema, progress=progress, **epochs))
    report = evaluate_path(out / "models" / "digits", test_dir, out_dir=out / "evaluation-digits")
    print(report.describe())
    results["digits"] = report.auroc
    heat_dir = _top_heatmaps(out / "models" / "digits", test_dir / "anomalous",
                             out / "evaluation-digits" / "heatmaps")

    print("\n== summary")
    for name, auc in results.items():
        print(f"{name:14s} test AUROC {auc:.4f}   bundle {out / 'models' / name}")
    print(f"plots: {out}/evaluation-*/roc.png, score_histogram.png; bundle PNGs in "
          f"{out}/models/*/; heat maps of the top anomalies in {heat_dir}")
    return results


def _top_heatmaps(bundle: Path, folder: Path, heat_dir: Path, k: int = 6) -> Path:
    scorer = Scorer(bundle)
    files = list(iter_image_files(folder))
    result = scorer.score_images([f.read_bytes() for f in files])
    maps = scorer.heatmaps(result)
    shape = scorer.image.shape
    heat_dir.mkdir(parents=True, exist_ok=True)
    x = scorer.image.transform_images([f.read_bytes() for f in files])
    for rank, i in enumerate(np.argsort(-result.scores)[:k]):
        (heat_dir / f"top{rank + 1}_{files[i].stem}.png").write_bytes(plots.heatmap_overlay(
            x[i].reshape(shape), maps[i], result.reconstruction[i].reshape(shape),
            float(result.scores[i])))
    return heat_dir
