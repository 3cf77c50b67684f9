"""Evaluate a bundle on labelled data: AUROC, AUPRC, the calibrated threshold's precision,
recall and FPR, the F1-optimal threshold, plus ROC and score-histogram PNGs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anomaly import metrics, plots
from anomaly.errors import InputError
from anomaly.scorer import Scorer
from anomaly.tables import iter_image_files, read_table, table_columns
from anomaly.threshold import f1_optimal_threshold

NORMAL_FOLDERS = frozenset({"normal", "good", "ok"})


@dataclass
class EvaluationReport:
    name: str
    n_normal: int
    n_anomalous: int
    auroc: float
    auprc: float
    at_calibrated: metrics.ThresholdReport
    f1_optimal: metrics.ThresholdReport
    target_fpr: float
    out_dir: Path

    def as_dict(self) -> dict[str, object]:
        return {"model": self.name, "n_normal": self.n_normal, "n_anomalous": self.n_anomalous,
                "auroc": self.auroc, "auprc": self.auprc, "target_fpr": self.target_fpr,
                "at_calibrated_threshold": self.at_calibrated.as_dict(),
                "f1_optimal_threshold": self.f1_optimal.as_dict()}

    def describe(self) -> str:
        c, f = self.at_calibrated, self.f1_optimal
        return "\n".join([
            f"{self.name}: {self.n_normal} normal, {self.n_anomalous} anomalous",
            f"AUROC {self.auroc:.4f}   AUPRC {self.auprc:.4f}",
            f"calibrated threshold {c.threshold:.3f} (target FPR {self.target_fpr:g}): "
            f"precision {c.precision:.3f} recall {c.recall:.3f} F1 {c.f1:.3f} FPR {c.fpr:.4f}",
            f"F1-optimal threshold {f.threshold:.3f}: precision {f.precision:.3f} "
            f"recall {f.recall:.3f} F1 {f.f1:.3f} FPR {f.fpr:.4f}",
            f"wrote metrics.json, roc.png, score_histogram.png to {self.out_dir}",
        ])


def evaluate_scores(scorer: Scorer, scores: np.ndarray, labels: np.ndarray,
                    out_dir: str | os.PathLike[str]) -> EvaluationReport:
    """Metrics and plots for scores already computed with ``scorer``'s bundle."""
    y = np.asarray(labels).astype(bool)
    if y.all() or not y.any():
        raise InputError("evaluation needs both normal (0) and anomalous (1) examples; "
                         f"got {int((~y).sum())} normal and {int(y.sum())} anomalous")
    threshold = scorer.threshold
    calibrated = metrics.at_threshold(scores, y, threshold)
    best = f1_optimal_threshold(scores, y)
    report = EvaluationReport(
        name=scorer.bundle.name, n_normal=int((~y).sum()), n_anomalous=int(y.sum()),
        auroc=metrics.auroc(scores, y), auprc=metrics.auprc(scores, y),
        at_calibrated=calibrated, f1_optimal=metrics.at_threshold(scores, y, best.threshold),
        target_fpr=scorer.manifest.threshold.target_fpr, out_dir=Path(out_dir))
    report.out_dir.mkdir(parents=True, exist_ok=True)
    fpr, tpr = metrics.roc_curve(scores, y)
    (report.out_dir / "roc.png").write_bytes(
        plots.roc_plot(fpr, tpr, report.auroc, (calibrated.fpr, calibrated.recall)))
    (report.out_dir / "score_histogram.png").write_bytes(plots.score_histogram(
        scores[~y], threshold, scores[y], title=f"{report.name}: scores by label"))
    (report.out_dir / "metrics.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return report


def _labels(values: np.ndarray, column: str) -> np.ndarray:
    try:
        y = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"label column '{column}' must hold 0/1 values") from exc
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise InputError(f"label column '{column}' must hold only 0 (normal) and 1 (anomaly)")
    return y.astype(bool)


def evaluate_path(bundle: str | os.PathLike[str], source: str | os.PathLike[str],
                  label_column: str | None = None, out_dir: str | os.PathLike[str] | None = None,
                  mc_samples: int | None = None, seed: int = 0,
                  progress: bool = True) -> EvaluationReport:
    """Score labelled data (a table with ``label_column``, or an image folder labelled by its
    first-level subfolders) and evaluate."""
    scorer = Scorer(bundle, mc_samples=mc_samples)
    out = Path(out_dir) if out_dir else Path(f"evaluation-{scorer.bundle.name}")
    src = Path(source)
    if src.is_dir():
        files = list(iter_image_files(src))
        if not files:
            raise InputError(f"no images found under {src}")
        labels = np.array([f.relative_to(src).parts[0].lower() not in NORMAL_FOLDERS
                           if len(f.relative_to(src).parts) > 1 else False for f in files])
        result = scorer.score_images([f.read_bytes() for f in files], seeds=seed)
    else:
        if not label_column:
            raise InputError("tables need --label-column naming the 0/1 anomaly label")
        columns = table_columns(read_table(src))
        if label_column not in columns:
            raise InputError(f"label column '{label_column}' is not in {src}; columns are "
                             f"{list(columns)}")
        labels = _labels(columns[label_column], label_column)
        result = scorer.score_rows(columns, seeds=seed)
    return evaluate_scores(scorer, result.scores, labels, out)
