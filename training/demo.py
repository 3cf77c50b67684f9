"""``anomaly demo``: train and evaluate on data that ships inside scikit-learn.

1. Breast-cancer table: train on benign rows, find malignant ones among held-out rows.
2. 8x8 digits as PNG files: train on nine digits, find the tenth; heat maps of the top hits.

Each evaluation also writes its HTML report (``evaluation-*/report.html``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from anomaly._fs import atomic_write
from anomaly.batch import write_table
from anomaly.evaluation import evaluate_path, write_report
from training.datasets import breast_cancer, load_image_folder, write_digits_folders
from training.pipeline import image_config, tabular_config, train_images, train_tabular

#: The digit held out as the anomaly in the image demo.
DEMO_ANOMALY_DIGIT = 7


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """The demo's networks are tiny (30 columns; 8x8 images), too small for intra-op threads
    to pay: on 2 idle cores one thread trains both demo models as fast as two (about 23 s),
    and when another process holds a core two threads spin against it and the digits model
    took 38-68 s instead of 13 s (measured on the project's shared 2-core host)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_demo(out: Path, quick: bool = False, progress: bool = True) -> dict[str, float]:
    """Run both demos under ``out``; returns {demo: test AUROC} and prints a summary."""
    with _one_torch_thread():
        return _run_demo(out, quick, progress)


def _run_demo(out: Path, quick: bool, progress: bool) -> dict[str, float]:
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
                           out / "evaluation-breast_cancer", progress=progress)
    print(report.describe())
    write_report(out / "models" / "breast_cancer", test_csv, report,
                 report.out_dir / "report.html")
    results["breast_cancer"] = report.auroc

    print(f"\n== 2/2 digits (8x8 images): digit {DEMO_ANOMALY_DIGIT} is the anomaly")
    train_dir, test_dir = write_digits_folders(data_dir / "digits", DEMO_ANOMALY_DIGIT)
    images, schema = load_image_folder(train_dir, progress=progress)
    train_images(images, schema, out / "models" / "digits", "digits",
                 image_config(schema, progress=progress, **epochs))
    report = evaluate_path(out / "models" / "digits", test_dir, out_dir=out / "evaluation-digits",
                           progress=progress)
    print(report.describe())
    page = write_report(out / "models" / "digits", test_dir, report,
                        report.out_dir / "report.html", top=6)
    results["digits"] = report.auroc
    heat_dir = report.out_dir / "heatmaps"
    heat_dir.mkdir(exist_ok=True)
    for rank, top in enumerate(page.top, 1):
        if top.heatmap is not None:
            atomic_write(heat_dir / f"top{rank}_{Path(top.ident).stem}.png", top.heatmap)

    print("\n== summary")
    for name, auc in results.items():
        print(f"{name:14s} test AUROC {auc:.4f}   bundle {out / 'models' / name}")
    print(f"open {out}/evaluation-*/report.html: curves, histograms, metrics, the top "
          f"anomalies (heat maps of the digits in {heat_dir}) and the bundles' facts")
    return results

