"""``anomaly evaluate ... --report report.html``: the evaluation as one page people can open,
mail and archive. Self-contained: every figure is a PNG embedded as a data URI, the style is
inline, there is no script and nothing is fetched.

Built from what the evaluation already wrote (``<out_dir>/scores.csv``) and its
:class:`EvaluationReport`: ROC and precision-recall curves, the score histogram by label with
the threshold, the metrics at the calibrated and the F1-optimal thresholds, the top anomalies
and the bundle's facts. Only the top few samples are scored again, by the :class:`Scorer`
with the evaluation's seed and L (so with the same scores): images for their heat maps, table
rows (read again from the input, streamed) for the columns that contribute most.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from anomaly import plots
from anomaly._fs import atomic_write
from anomaly.batch.options import TABLE_CHUNK_ROWS
from anomaly.batch.sink import LABEL_COL
from anomaly.batch.sources import ROW_COL, expand_table_inputs, is_csv, iter_table_chunks
from anomaly.bundle import Bundle, load_bundle
from anomaly.calibration import metrics
from anomaly.errors import InputError
from anomaly.evaluation.evaluate import EvaluationReport, _folder_label, _labels
from anomaly.evaluation.page import Figures, TopAnomaly, render_page
from anomaly.inference import Scorer

#: Top anomalies shown (each image costs one heat-map figure, ~0.1 s).
DEFAULT_TOP = 8
#: Columns shown per top table row.
TOP_COLUMNS = 3


@dataclass(frozen=True)
class HtmlReport:
    path: Path
    top: list[TopAnomaly]


def check_report_path(target: str | os.PathLike[str]) -> Path:
    """Fail before any scoring when the report could not be written where asked."""
    path = Path(target)
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--report {path} must end in .html")
    if path.is_dir():
        raise InputError(f"--report {path} is a folder; give a file name ending in .html")
    if not path.parent.is_dir():
        raise InputError(f"--report {path}: the folder {path.parent} does not exist")
    return path


def write_report(bundle: Bundle | str | os.PathLike[str], source: str | os.PathLike[str],
                 report: EvaluationReport, target: str | os.PathLike[str],
                 top: int = DEFAULT_TOP, seed: int = 0,
                 mc_samples: int | None = None) -> HtmlReport:
    """Write the HTML page for ``report`` (an evaluation of ``bundle`` on ``source``)."""
    path = check_report_path(target)
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    table = _read_scores(report.out_dir / "scores.csv")
    scores = table.column("score").to_numpy()  # (N,)
    image = loaded.manifest.kind == "image"
    if image:
        labels = np.array([_folder_label(p) for p in table.column("path").to_pylist()])
    else:
        labels = _labels(table, LABEL_COL)
    scorer = Scorer(loaded, mc_samples=mc_samples)
    order = np.argsort(-scores, kind="stable")[:max(top, 0)]
    picked = [{name: table.column(name)[int(i)].as_py() for name in table.column_names}
              | {"anomalous": bool(labels[i])} for i in order]
    tops = (_top_images(scorer, Path(source), picked, seed) if image
            else _top_rows(scorer, source, picked, seed))
    figures = _figures(loaded, report, scores, labels)
    page = render_page(loaded, report, figures, tops, os.fspath(source),
                       datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    atomic_write(path, page.encode())
    return HtmlReport(path, tops)


def _read_scores(path: Path) -> pa.Table:
    types = {"score": pa.float64(), "p_value": pa.float64(), "path": pa.string(),
             "file": pa.string(), LABEL_COL: pa.string()}
    try:
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read the evaluation's scores {path}: {exc}") from exc


# --- figures ---------------------------------------------------------------------------------

def _figures(bundle: Bundle, report: EvaluationReport, scores: np.ndarray,
             labels: np.ndarray) -> Figures:
    c, f = report.at_calibrated, report.f1_optimal
    marks = [("calibrated", c), ("F1-optimal", f)]
    fpr, tpr = metrics.roc_curve(scores, labels)
    out = Figures(
        roc=plots.roc_plot(fpr, tpr, report.auroc, (c.fpr, c.recall)),
        pr=_pr_plot(fpr, tpr, int(labels.sum()), int((~labels).sum()), report.auprc, marks),
        histogram=_label_histogram(scores, labels, marks))
    for name, caption in (("training_curve.png", "Training curve (from the bundle)"),
                          ("calibration_histogram.png",
                           "Calibration scores, held-out normal data (from the bundle)")):
        png = bundle.path / name
        if png.is_file():
            out.bundle[caption] = png.read_bytes()
    return out


def _pr_plot(fpr: np.ndarray, tpr: np.ndarray, n_pos: int, n_neg: int, auprc: float,
             marks: Sequence[tuple[str, metrics.ThresholdReport]]) -> bytes:
    """Precision against recall, from the ROC points (tp = tpr * P, fp = fpr * N), with the
    share of anomalies (a random ranking's precision) as the baseline."""
    import matplotlib.pyplot as plt

    tp, fp = tpr[1:] * n_pos, fpr[1:] * n_neg  # the (0, 0) point has no precision
    precision = tp / np.maximum(tp + fp, 1e-12)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.step(np.r_[0.0, tpr[1:]], np.r_[precision[0], precision], where="pre", lw=2,
            label=f"AUPRC = {auprc:.3f}")
    base = n_pos / (n_pos + n_neg)
    ax.axhline(base, color="grey", ls=":", lw=1, label=f"share of anomalies {base:.2f}")
    for (name, point), colour in zip(marks, ("red", "darkorange"), strict=False):
        ax.plot(point.recall, point.precision, "o", color=colour, label=f"{name} threshold")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (true-positive rate)")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall")
    ax.legend(loc="lower left", fontsize=8)
    return plots._png(fig)


def _label_histogram(scores: np.ndarray, labels: np.ndarray,
                     marks: Sequence[tuple[str, metrics.ThresholdReport]]) -> bytes:
    """Scores of normal and anomalous samples, each as shares of its own group, with both
    thresholds. When the anomalies reach far beyond the spread of the normal scores (a table
    row 100x off scores ~1e4 nats), the axis is symmetric-log so that the normal bulk and the
    thresholds stay visible."""
    import matplotlib.pyplot as plt

    lo, hi = np.percentile(scores, [0.5, 99.5])
    lo = min(lo, *(t.threshold for _, t in marks))
    hi = max(hi, *(t.threshold for _, t in marks)) + 1e-9
    normal_lo, normal_hi = np.percentile(scores[~labels], [5, 95])
    spread = max(float(normal_hi - normal_lo), 1e-6)
    symlog = hi - lo > 20 * spread
    if symlog:  # bins even in sign(x) log1p(|x| / c), the symlog axis' own coordinates
        c = spread

        def fwd(v: np.ndarray) -> np.ndarray:
            return np.sign(v) * np.log1p(np.abs(v) / c)

        u = np.linspace(fwd(np.array(lo)), fwd(np.array(hi)), 61)
        bins = np.sign(u) * c * np.expm1(np.abs(u))
    else:
        bins = np.linspace(lo, hi, 61)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for mask, name, colour in ((~labels, "normal", "tab:blue"),
                               (labels, "anomalous", "tab:orange")):
        group = np.clip(scores[mask], bins[0], bins[-1])
        ax.hist(group, bins=bins.tolist(), weights=np.full(group.size, 1 / group.size), alpha=0.6,
                color=colour, label=f"{name} ({group.size})")
    for (name, t), style in zip(marks, (("red", "-"), ("darkorange", "--")), strict=False):
        ax.axvline(t.threshold, color=style[0], ls=style[1], lw=1.5,
                   label=f"{name} threshold {t.threshold:.2f}")
    if symlog:
        ax.set_xscale("symlog", linthresh=c)
    ax.set_xlim(bins[0], bins[-1])
    ax.set_xlabel("anomaly score (nats)" + (", symmetric-log axis" if symlog else ""))
    ax.set_ylabel("share of its group")
    ax.set_title("Scores by label")
    ax.legend(fontsize=8)
    return plots._png(fig)


# --- the top anomalies -----------------------------------------------------------------------

def _top_images(scorer: Scorer, root: Path, picked: list[dict[str, object]],
                seed: int) -> list[TopAnomaly]:
    if not picked:
        return []
    rels = [str(p["path"]) for p in picked]
    x = scorer.image.transform_images([(root / rel).read_bytes() for rel in rels])  # (k, D)
    result = scorer.score(x, seed)
    maps = scorer.heatmaps(result)  # (k, H, W), nats per pixel
    shape = scorer.image.shape
    return [TopAnomaly(rel, float(p["score"]), float(p["p_value"]),  # type: ignore[arg-type]
                       bool(p["anomalous"]),
                       heatmap=plots.heatmap_overlay(x[i].reshape(shape), maps[i],
                                                     result.reconstruction[i].reshape(shape),
                                                     float(result.scores[i])))
            for i, (rel, p) in enumerate(zip(rels, picked, strict=True))]


def _top_rows(scorer: Scorer, source: str | os.PathLike[str], picked: list[dict[str, object]],
              seed: int) -> list[TopAnomaly]:
    """Read the picked rows again (streamed: one pass over each file that holds one), score
    them, and keep their top columns with the values as the file holds them."""
    if not picked:
        return []
    files = expand_table_inputs(source)
    index = {str(p): i for i, p in enumerate(files)}
    keys = [(index[str(p["file"])] if "file" in p else 0, int(p["row"]))  # type: ignore[call-overload]
            for p in picked]
    prep = scorer.tabular
    rows: dict[tuple[int, int], tuple[pa.Table, bool]] = {}
    for fi, path in enumerate(files):
        wanted = np.array(sorted({r for f, r in keys if f == fi}), dtype=np.int64)
        if not wanted.size:
            continue
        for chunk in iter_table_chunks(path, fi, prep.column_names, TABLE_CHUNK_ROWS):
            hit = np.isin(chunk.column(ROW_COL).to_numpy(), wanted)
            for j in np.flatnonzero(hit):
                rows[(fi, int(chunk.column(ROW_COL)[int(j)].as_py()))] = (
                    chunk.slice(int(j), 1), is_csv(path))
    out = []
    for key, p in zip(keys, picked, strict=True):
        raw, from_csv = rows[key]
        x, _ = prep.encode_arrow(raw, from_csv)
        result = scorer.score(x, seed)
        columns = [(name, _shown(raw.column(name)[0].as_py()), nats)
                   for name, nats in scorer.top_columns(result, TOP_COLUMNS)[0]]
        ident = f"{Path(files[key[0]]).name}:{key[1]}" if len(files) > 1 else str(key[1])
        out.append(TopAnomaly(ident, float(p["score"]), float(p["p_value"]),  # type: ignore[arg-type]
                              bool(p["anomalous"]), columns=columns))
    return out


def _shown(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)

