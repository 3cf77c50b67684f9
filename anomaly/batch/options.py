"""What a batch-scoring job was asked (:class:`ScoreOptions`, whose fields are also the
``anomaly score`` flags) and what it reports (:class:`ScoreSummary`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

#: Default chunk sizes: rows of a table, images of a folder. A chunk is the unit of scoring,
#: of memory (tables: ~16k rows x the input width) and of resume.
TABLE_CHUNK_ROWS = 16384
IMAGE_CHUNK_ROWS = 256


def _flag(help_text: str, **extra: object) -> dict[str, object]:
    return {"help": help_text, **extra}


@dataclass
class ScoreOptions:
    """Options of ``anomaly score``. The ``help`` of each field is its flag's help; fields
    without one are set by the program, not on the command line."""

    mc_samples: int | None = field(default=None, metadata=_flag(
        "latent samples L (default: the bundle's)", metavar="L"))
    seed: int = field(default=0, metadata=_flag("noise seed (same seed, same scores)"))
    score_se: bool = field(default=False, metadata=_flag(
        "add a score_se column: each score's Monte Carlo standard error in nats"))
    explain: int = field(default=0, metadata=_flag(
        "add the top-K columns by feature score (tabular)", metavar="K"))
    heatmaps: str | os.PathLike[str] | None = field(default=None, metadata=_flag(
        "write an anomaly heat-map PNG per image to DIR", metavar="DIR"))
    id_column: str | None = field(default=None, metadata=_flag(
        "input column copied to the output to identify rows (default: the row number)"))
    providers: Sequence[str] | None = field(default=None, metadata=_flag(
        "onnxruntime execution providers, comma-separated"))
    fail_on_bad: bool = field(default=False, metadata=_flag(
        "stop at the first bad row or image instead of writing it to the rejects file"))
    resume: bool = field(default=False, metadata=_flag(
        "continue an interrupted run with the same arguments from its last finished chunk"))
    chunk_rows: int | None = field(default=None, metadata=_flag(
        f"rows (or images) per chunk: the unit of memory and of --resume (default "
        f"{TABLE_CHUNK_ROWS} rows, {IMAGE_CHUNK_ROWS} images)", metavar="N"))
    engine: Literal["local", "ray"] = field(default="local", metadata=_flag(
        "local: this process; ray: Ray Data (pip install 'vae-anomaly[ray]')"))
    ray_address: str | None = field(default=None, metadata=_flag(
        "Ray cluster to use with --engine ray (default: start a local Ray)", metavar="ADDR"))
    #: a 0/1 label column carried into the output beside the scores (``anomaly evaluate``)
    label_column: str | None = None
    progress: bool = True


@dataclass
class ScoreSummary:
    output: Path
    scored: int
    anomalies: int
    target_fpr: float
    seconds: float
    extra: list[str] = field(default_factory=list)
    rejected: int = 0
    rejects: Path | None = None
    resumed_rows: int = 0  # rows finished by an interrupted run and not redone
    engine: str = "local"

    @property
    def anomaly_rate(self) -> float:
        return self.anomalies / self.scored if self.scored else 0.0

    @property
    def rows_per_second(self) -> float:
        """Input rows (scored or rejected) handled by this run per second of wall time."""
        done = self.scored + self.rejected - self.resumed_rows
        return done / self.seconds if self.seconds > 0 else float("inf")

    def describe(self) -> str:
        lines = [f"scored {self.scored} samples in {self.seconds:.1f}s "
                 f"({self.rows_per_second:,.0f}/s, {self.engine} engine)"]
        if self.resumed_rows:
            lines.append(f"resumed: {self.resumed_rows} of them were done by the interrupted "
                         "run")
        lines.append(f"flagged {self.anomalies} as anomalous: rate {self.anomaly_rate:.4f} vs "
                     f"calibrated FPR {self.target_fpr:g}")
        if self.rejected:
            lines.append(f"rejected {self.rejected} bad rows/images: reasons in {self.rejects}")
        lines += [f"wrote {self.output}", *self.extra]
        return "\n".join(lines)
