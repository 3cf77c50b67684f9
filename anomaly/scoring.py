"""Score a whole CSV/Parquet file or image folder with a bundle and write one output table.

Output columns: the id (``--id-column``, else ``row``; the relative ``path`` for images),
``score``, ``p_value``, ``is_anomaly``, then ``topK_column``/``topK_score`` with ``explain``.
The output is written to a temporary file and renamed, so it is never half-written.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from anomaly import plots
from anomaly.errors import InputError
from anomaly.scorer import Scorer, ScoreResult
from anomaly.tables import iter_image_files, read_table, table_columns

CHUNK_ROWS = 4096


@dataclass
class ScoreOptions:
    mc_samples: int | None = None
    seed: int = 0
    explain: int = 0
    heatmaps: str | os.PathLike[str] | None = None
    id_column: str | None = None
    progress: bool = True
    providers: Sequence[str] | None = None


@dataclass
class ScoreSummary:
    output: Path
    scored: int
    anomalies: int
    target_fpr: float
    seconds: float
    extra: list[str] = field(default_factory=list)

    @property
    def anomaly_rate(self) -> float:
        return self.anomalies / self.scored if self.scored else 0.0

    def describe(self) -> str:
        rate = self.scored / self.seconds if self.seconds > 0 else float("inf")
        lines = [f"scored {self.scored} samples in {self.seconds:.1f}s ({rate:,.0f}/s)",
                 f"flagged {self.anomalies} as anomalous: rate {self.anomaly_rate:.4f} vs "
                 f"calibrated FPR {self.target_fpr:g}",
                 f"wrote {self.output}", *self.extra]
        return "\n".join(lines)


def check_output_path(out: str | os.PathLike[str]) -> Path:
    """Fail before any work if the output's format cannot be told from its extension."""
    target = Path(out)
    if target.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise InputError(f"output {target} must end in .csv or .parquet")
    if target.is_dir():
        raise InputError(f"output {target} is a folder; give a file name ending in .csv")
    return target


def write_table_atomic(table: pa.Table, out: str | os.PathLike[str]) -> Path:
    """Write CSV or Parquet (by extension) via a temporary file in the same folder + rename."""
    target = check_output_path(out)
    suffix = target.suffix.lower()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        if suffix == ".csv":
            pacsv.write_csv(table, tmp_name)
        else:
            pq.write_table(table, tmp_name)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def result_columns(scorer: Scorer, result: ScoreResult, explain: int) -> dict[str, np.ndarray]:
    """score, p_value, is_anomaly (+ top-K attributions for tabular models)."""
    out: dict[str, np.ndarray] = {
        "score": result.scores, "p_value": result.p_values, "is_anomaly": result.is_anomaly}
    if explain > 0:
        tops = scorer.top_columns(result, explain)
        for k in range(min(explain, len(tops[0]) if tops else 0)):
            out[f"top{k + 1}_column"] = np.array([t[k][0] for t in tops], dtype=object)
            out[f"top{k + 1}_score"] = np.array([t[k][1] for t in tops])
    return out


def score_path(bundle: str | os.PathLike[str], source: str | os.PathLike[str],
               out: str | os.PathLike[str], options: ScoreOptions | None = None) -> ScoreSummary:
    """Score ``source`` (table file or image folder) and write ``out``."""
    options = options or ScoreOptions()
    check_output_path(out)
    started = time.perf_counter()
    scorer = Scorer(bundle, providers=options.providers, mc_samples=options.mc_samples)
    src = Path(source)
    if src.is_dir():
        table, extra = _score_images(scorer, src, options)
    else:
        table, extra = _score_table(scorer, src, options)
    path = write_table_atomic(table, out)
    flagged = int(np.asarray(table.column("is_anomaly")).sum())
    return ScoreSummary(path, table.num_rows, flagged, scorer.manifest.threshold.target_fpr,
                        time.perf_counter() - started, extra)


def _score_table(scorer: Scorer, src: Path, options: ScoreOptions) -> tuple[pa.Table, list[str]]:
    if scorer.manifest.kind != "tabular":
        raise InputError(f"model '{scorer.bundle.name}' scores images: give it a folder of "
                         f"images, not {src.name}")
    columns = table_columns(read_table(src))
    n = len(next(iter(columns.values())))
    if options.id_column is not None and options.id_column not in columns:
        raise InputError(f"--id-column '{options.id_column}' is not a column of {src}")
    prepared = scorer._tabular().transform(columns)
    parts = []
    with tqdm(total=n, unit="row", desc="scoring", disable=not options.progress) as bar:
        for start in range(0, n, CHUNK_ROWS):
            x = prepared.x[start : start + CHUNK_ROWS]
            parts.append(result_columns(scorer, scorer.score(x, options.seed), options.explain))
            bar.update(x.shape[0])
    ids = {options.id_column: columns[options.id_column]} if options.id_column else \
        {"row": np.arange(n)}
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return pa.table({**ids, **merged}), []


def _score_images(scorer: Scorer, src: Path, options: ScoreOptions) -> tuple[pa.Table, list[str]]:
    if scorer.manifest.kind != "image":
        raise InputError(f"model '{scorer.bundle.name}' scores table rows: give it a CSV or "
                         f"Parquet file, not the folder {src}")
    files = list(iter_image_files(src))
    if not files:
        raise InputError(f"no images (png, jpg, bmp, tif, ...) found under {src}")
    heat_dir = Path(options.heatmaps) if options.heatmaps else None
    if heat_dir:
        heat_dir.mkdir(parents=True, exist_ok=True)
    prep = scorer._image()
    parts, names = [], []
    with tqdm(total=len(files), unit="img", desc="scoring", disable=not options.progress) as bar:
        for start in range(0, len(files), 256):
            chunk = files[start : start + 256]
            x = np.stack([prep.decode(f.read_bytes(), name=str(f)).reshape(-1) for f in chunk])
            result = scorer.score(x, options.seed)
            parts.append(result_columns(scorer, result, 0))
            names += [f.relative_to(src).as_posix() for f in chunk]
            if heat_dir:
                _write_heatmaps(scorer, result, x, chunk, src, heat_dir)
            bar.update(len(chunk))
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    extra = [f"heat maps in {heat_dir}"] if heat_dir else []
    return pa.table({"path": names, **merged}), extra


def _write_heatmaps(scorer: Scorer, result: ScoreResult, x: np.ndarray, files: list[Path],
                    root: Path, heat_dir: Path) -> None:
    shape = scorer._image().shape
    maps = scorer.heatmaps(result)  # (B, H, W)
    for i, f in enumerate(files):
        rel = f.relative_to(root).with_suffix(".png")
        target = heat_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(plots.heatmap_overlay(
            x[i].reshape(shape), maps[i], result.reconstruction[i].reshape(shape),
            float(result.scores[i])))
