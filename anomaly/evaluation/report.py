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
from anomaly.batch.sources import expand_table_inputs, is_csv
from anomaly.batch.stream import ROW_COL, iter_table_chunks
from anomaly.bundle import Bundle, load_bundle
from anomaly.calibration import metrics
from anomaly.errors import InputError
from anomaly.evaluation.evaluate import EvaluationReport, folder_label, labels_from_column
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
        labels = np.array([folder_label(p) for p in table.column("path").to_pylist()])
    else:
        labels = labels_from_column(table, LABEL_COL, report.normal_labels)
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
        pr=plots.pr_plot(fpr, tpr, int(labels.sum()), int((~labels).sum()), report.auprc, marks),
        histogram=plots.label_histogram(scores, labels, marks))
    for name, caption in (("training_curve.png", "Training curve (from the bundle)"),
                          ("calibration_histogram.png",
                           "Calibration scores, held-out normal data (from the bundle)")):
        png = bundle.path / name
        if png.is_file():
            out.bundle[caption] = png.read_bytes()
    return out


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

