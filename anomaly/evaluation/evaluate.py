"""Evaluate a bundle on labelled data: AUROC, AUPRC, the calibrated threshold's precision,
recall and FPR, the F1-optimal threshold, plus ROC and score-histogram PNGs.

Scoring runs on the batch engine (:func:`anomaly.batch.score_path`), so evaluation streams
like ``anomaly score`` does: memory does not grow with the input beyond one float per row,
and a bad row or unreadable image is written to ``scores.rejects.csv`` and left out of the
metrics instead of aborting the run. The per-row scores stay in ``<out_dir>/scores.csv``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from anomaly import plots
from anomaly._fs import atomic_write
from anomaly.batch import ScoreOptions, ScoreSummary, score_path
from anomaly.batch.sink import LABEL_COL
from anomaly.bundle import Bundle, McErrorInfo, load_bundle
from anomaly.calibration import metrics
from anomaly.calibration.threshold import f1_optimal_threshold, observed_fpr_interval, rank_of
from anomaly.errors import InputError
from anomaly.inference import describe_error, error_at_threshold

#: First-level subfolders of an image folder whose images are normal (label 0).
NORMAL_FOLDERS = frozenset({"normal", "good", "ok"})
#: Label values read as normal / anomalous (text, case-insensitive).
NORMAL_LABELS = frozenset({"0", "0.0", "false", "normal", "inlier", "nominal"})
ANOMALY_LABELS = frozenset({"1", "1.0", "true", "anomaly", "anomalous", "abnormal", "outlier"})


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
    rejected: int = 0
    rejects: Path | None = None
    #: where the FPR measured on these normal rows should fall (95%), from the calibration
    fpr_expected: tuple[float, float] | None = None
    #: Monte Carlo error of the normal scores near the threshold (None without errors)
    mc_error: McErrorInfo | None = None
    #: the label values that mean normal when given (``--normal-label``); every other
    #: value is an anomaly. Empty: :data:`NORMAL_LABELS` and :data:`ANOMALY_LABELS`.
    normal_labels: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"model": self.name, "n_normal": self.n_normal, "n_anomalous": self.n_anomalous,
                "rejected": self.rejected, "auroc": self.auroc, "auprc": self.auprc,
                "target_fpr": self.target_fpr,
                "fpr_expected_95": list(self.fpr_expected) if self.fpr_expected else None,
                "at_calibrated_threshold": self.at_calibrated.as_dict(),
                "f1_optimal_threshold": self.f1_optimal.as_dict(),
                "mc_error": self.mc_error.model_dump() if self.mc_error else None,
                "normal_labels": list(self.normal_labels) or None}

    def describe(self) -> str:
        c, f = self.at_calibrated, self.f1_optimal
        lines = [
            f"{self.name}: {self.n_normal} normal, {self.n_anomalous} anomalous",
            f"AUROC {self.auroc:.4f}   AUPRC {self.auprc:.4f}",
            f"calibrated threshold {c.threshold:.3f} (target FPR {self.target_fpr:g}): "
            f"precision {c.precision:.3f} recall {c.recall:.3f} F1 {c.f1:.3f} FPR {c.fpr:.4f}"
            + (f" (95% expected on {self.n_normal} normal rows: {self.fpr_expected[0]:.4f}-"
               f"{self.fpr_expected[1]:.4f})" if self.fpr_expected else ""),
            f"F1-optimal threshold {f.threshold:.3f}: precision {f.precision:.3f} "
            f"recall {f.recall:.3f} F1 {f.f1:.3f} FPR {f.fpr:.4f}",
            f"score SE {describe_error(self.mc_error, self.target_fpr)}",
        ]
        if self.rejected:
            lines.append(f"left out {self.rejected} rows/images that could not be scored: "
                         f"reasons in {self.rejects}")
        lines.append(f"wrote scores.csv, metrics.json, roc.png, score_histogram.png to "
                     f"{self.out_dir}")
        return "\n".join(lines)


def evaluate_scores(bundle: Bundle, scores: np.ndarray, labels: np.ndarray,
                    out_dir: str | os.PathLike[str], summary: ScoreSummary | None = None,
                    se: np.ndarray | None = None, mc_samples: int | None = None,
                    normal_labels: tuple[str, ...] = ()) -> EvaluationReport:
    """Metrics and plots for scores already computed with ``bundle`` (``se``: their
    standard errors, (N,), NaN where unknown)."""
    y = np.asarray(labels).astype(bool)
    if y.all() or not y.any():
        raise InputError("evaluation needs both normal (0) and anomalous (1) examples; "
                         f"got {int((~y).sum())} normal and {int(y.sum())} anomalous")
    threshold = bundle.threshold
    calibrated = metrics.at_threshold(scores, y, threshold)
    best = f1_optimal_threshold(scores, y)
    report = EvaluationReport(
        name=bundle.name, n_normal=int((~y).sum()), n_anomalous=int(y.sum()),
        auroc=metrics.auroc(scores, y), auprc=metrics.auprc(scores, y),
        at_calibrated=calibrated, f1_optimal=metrics.at_threshold(scores, y, best.threshold),
        target_fpr=bundle.manifest.threshold.target_fpr, out_dir=Path(out_dir),
        rejected=summary.rejected if summary else 0,
        rejects=summary.rejects if summary else None,
        fpr_expected=_expected_fpr(bundle, int((~y).sum())),
        mc_error=None if se is None else error_at_threshold(
            scores[~y], se[~y], threshold, bundle.manifest.threshold.target_fpr,
            mc_samples or bundle.manifest.model.mc_samples, bundle.manifest.model.noise),
        normal_labels=tuple(normal_labels))
    report.out_dir.mkdir(parents=True, exist_ok=True)
    fpr, tpr = metrics.roc_curve(scores, y)
    atomic_write(report.out_dir / "roc.png",
                 plots.roc_plot(fpr, tpr, report.auroc, (calibrated.fpr, calibrated.recall)))
    atomic_write(report.out_dir / "score_histogram.png", plots.score_histogram(
        scores[~y], threshold, scores[y], title=f"{report.name}: scores by label"))
    atomic_write(report.out_dir / "metrics.json",
                 (json.dumps(report.as_dict(), indent=2) + "\n").encode())
    return report


def evaluate_path(bundle: str | os.PathLike[str], source: str | os.PathLike[str],
                  label_column: str | None = None, out_dir: str | os.PathLike[str] | None = None,
                  mc_samples: int | None = None, seed: int = 0,
                  progress: bool = True,
                  normal_labels: tuple[str, ...] = ()) -> EvaluationReport:
    """Score labelled data (a table with ``label_column``, or an image folder labelled by its
    first-level subfolders) and evaluate. ``normal_labels``: the label values of normal rows
    (``2`` in a 2/4 coded table, ``normal.`` in KDD Cup); every other value is an anomaly."""
    loaded = load_bundle(bundle)
    out = Path(out_dir) if out_dir else Path(f"evaluation-{loaded.name}")
    src = Path(source)
    image = loaded.manifest.kind == "image"
    if image and label_column:
        raise InputError("--label-column is for tables; an image folder is labelled by its "
                         f"subfolders ({', '.join(sorted(NORMAL_FOLDERS))} = normal)")
    if not image and not label_column:
        raise InputError("tables need --label-column naming the 0/1 anomaly label")
    if image and normal_labels:
        raise InputError("--normal-label is for tables; an image folder is labelled by its "
                         f"subfolders ({', '.join(sorted(NORMAL_FOLDERS))} = normal)")
    options = ScoreOptions(mc_samples=mc_samples, seed=seed, progress=progress,
                           label_column=label_column, score_se=True)
    scores_csv = out / "scores.csv"
    summary = score_path(loaded.path, src, scores_csv, options)
    types = {"score": pa.float64(), "score_se": pa.float64(), "path": pa.string(),
             LABEL_COL: pa.string()}
    table = pacsv.read_csv(scores_csv, convert_options=pacsv.ConvertOptions(
        column_types=types, strings_can_be_null=True))
    scores = table.column("score").to_numpy()
    if image:
        labels = np.array([folder_label(p) for p in table.column("path").to_pylist()])
    else:
        assert label_column is not None
        labels = labels_from_column(table, label_column, normal_labels)
    se = table.column("score_se").to_numpy(zero_copy_only=False).astype(np.float64)
    return evaluate_scores(loaded, scores, labels, out, summary, se, mc_samples,
                           normal_labels)


def _expected_fpr(bundle: Bundle, m: int) -> tuple[float, float]:
    """The 95% interval the FPR measured on m normal rows falls in, if the threshold keeps
    its promise (:func:`anomaly.calibration.threshold.observed_fpr_interval`)."""
    cal = bundle.calibration_scores
    info = bundle.manifest.threshold
    rank = info.rank or rank_of(cal, info.value)
    return observed_fpr_interval(cal.size, rank, m)


def folder_label(relpath: str) -> bool:
    """True (anomalous) for an image in a first-level subfolder that is not a normal one."""
    parts = relpath.split("/")
    return len(parts) > 1 and parts[0].lower() not in NORMAL_FOLDERS


def labels_from_column(table: pa.Table, column: str,
                       normal_labels: tuple[str, ...] = ()) -> np.ndarray:
    """(N,) bool, True for anomalies, from the label column of a scores table (text).
    Values compare stripped and case-insensitive. With ``normal_labels`` a row is normal
    when its label is one of them and anomalous otherwise; without, the label must be one of
    :data:`NORMAL_LABELS` or :data:`ANOMALY_LABELS`. A missing label is an error either way:
    which class it is would be a guess."""
    values = table.column(LABEL_COL).to_pylist()
    ids = table.column(table.column_names[0]).to_pylist()
    normal = {v.strip().lower() for v in normal_labels}
    out = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        key = (value or "").strip().lower()
        if not key:
            raise InputError(f"label column '{column}': {table.column_names[0]} {ids[i]} has "
                             "no label; label every row, or leave the unlabelled ones out")
        if normal:
            out[i] = key not in normal
        elif key in ANOMALY_LABELS:
            out[i] = True
        elif key not in NORMAL_LABELS:
            raise InputError(f"label column '{column}' must hold 0 (normal) and 1 (anomaly), "
                             f"or normal/anomaly; {table.column_names[0]} {ids[i]} has "
                             f"{value!r}: name the normal value with --normal-label (every "
                             "other value then counts as an anomaly)")
    return out
