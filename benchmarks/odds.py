"""ODDS tabular benchmark: ours (default settings, the public API) beside eight PyOD detectors.

    python benchmarks/odds.py --data ../shared/data/odds [--quick] [--tables glass wbc]
                              [--seeds 0 1 2] [--jobs 2] [--beta 0.5 --hidden 256,128 ...]

For each table and seed: a stratified 60/40 split (``sklearn.model_selection.train_test_split``,
``random_state=seed``); the *normal* rows of the 60% part are the training data of every
detector; the whole 40% part is scored (label 1 = outlier). Ours is trained with
``training.pipeline.train_tabular`` on ``tabular_config()`` (the product defaults; the script
passes no per-table setting, only ``seed`` and ``progress=False``) and scored through the
exported bundle on onnxruntime (``anomaly.Scorer.score_rows``); its test FPR at the bundle's
calibrated threshold (target ``tabular_config().target_fpr``) is reported beside the target.
PyOD's IForest, LOF, KNN, OCSVM, PCA, ECOD, COPOD and HBOS run with their defaults on the
training rows' informative columns (constant and exactly duplicated training columns dropped);
the distance- and projection-based ones (LOF, KNN, OCSVM, PCA) on inputs standardised with the
training rows' mean and standard deviation. One exception, recorded per run under "notes":
where PyOD's PCA default gives non-finite scores (a zero explained variance: cardio's columns
are exactly collinear on some splits) it is refitted with the components above 1e-10 of the
largest variance.

A detector that fails on a table (ours refusing a small table, a diverged training) is recorded
with its error and counted at chance (AUROC 0.5, AUPRC = the test outlier share) in the means
and ranks, so failures cost what a user would lose. Any ``anomaly train`` setting given as a
flag (``--beta 0.5``, ``--latent-dim 16``, ...) replaces that product default for ours in every
split: how a candidate default is measured; the run's JSON records them under
``ours_settings``. Writes benchmarks/results/odds{suffix}.json
after every (table, seed) and a markdown table next to it. Exits 0 with a message when the data
folder is absent.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from anomaly.calibration import auprc, auroc  # noqa: E402
from anomaly.cli.flags import Setting, add_arguments, dataclass_settings, given  # noqa: E402

TABLES = ("arrhythmia", "cardio", "glass", "lympho", "musk", "optdigits", "pendigits", "pima",
          "satellite", "thyroid", "wbc")
QUICK_TABLES = ("glass", "wbc")
OURS = "ours"
#: PyOD detectors in table order; those in STANDARDISED get z-scored inputs.
PYOD = ("IForest", "LOF", "KNN", "OCSVM", "PCA", "ECOD", "COPOD", "HBOS")
STANDARDISED = frozenset({"LOF", "KNN", "OCSVM", "PCA"})
DETECTORS = (OURS, *PYOD)
TEST_FRACTION = 0.4


def load_table(data: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """X (N, D) float64, y (N,) int64 (1 = outlier) of one ODDS ``.mat`` file."""
    from scipy.io import loadmat

    mat = loadmat(str(data / f"{name}.mat"))
    return np.asarray(mat["X"], dtype=np.float64), np.asarray(mat["y"]).ravel().astype(np.int64)


def split(x: np.ndarray, y: np.ndarray, seed: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 60/40 split -> (normal training rows, test rows, test labels)."""
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, stratify=y,
                                              random_state=seed)
    return x_tr[y_tr == 0], x_te, y_te


def as_columns(x: np.ndarray) -> dict[str, np.ndarray]:
    """(N, D) -> {"x0": ..., "x{D-1}": ...}: the rows as a user would hand them over."""
    return {f"x{j}": x[:, j] for j in range(x.shape[1])}


def standardise(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = x_train.mean(0), x_train.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    return [(a - mean) / std for a in (x_train, *others)]


def pyod_detector(name: str, seed: int) -> Any:
    """A PyOD detector with its defaults (``random_state`` where it takes one)."""
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD
    from pyod.models.hbos import HBOS
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF
    from pyod.models.ocsvm import OCSVM
    from pyod.models.pca import PCA

    makers: dict[str, Callable[[], Any]] = {
        "IForest": lambda: IForest(random_state=seed), "LOF": LOF, "KNN": KNN, "OCSVM": OCSVM,
        "PCA": lambda: PCA(random_state=seed), "ECOD": ECOD, "COPOD": COPOD, "HBOS": HBOS}
    return makers[name]()


def informative(x_train: np.ndarray) -> np.ndarray:
    """Indices of the training columns that are neither constant nor an exact copy of an
    earlier column (ODDS' arrhythmia and optdigits have both)."""
    keep: list[int] = []
    for j in range(x_train.shape[1]):
        col = x_train[:, j]
        if np.ptp(col) > 0 and not any(np.array_equal(col, x_train[:, k]) for k in keep):
            keep.append(j)
    return np.asarray(keep, dtype=np.int64)


def pyod_scores(name: str, x_train: np.ndarray, x_test: np.ndarray, seed: int
                ) -> tuple[np.ndarray, str | None]:
    """Scores of one PyOD detector, and a note when its default had to be changed."""
    import warnings

    keep = informative(x_train)
    x_train, x_test = x_train[:, keep], x_test[:, keep]
    if name in STANDARDISED:
        x_train, x_test = standardise(x_train, x_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        det = pyod_detector(name, seed)
        det.fit(x_train)
        scores = np.asarray(det.decision_function(x_test), dtype=np.float64)
        if name == "PCA" and not np.all(np.isfinite(scores)):
            # PyOD's PCA keeps every component and divides by its explained variance: an exactly
            # collinear training set (cardio) gives a zero there and infinite scores. Keep the
            # components above 1e-10 of the largest variance instead.
            rank = int((det.explained_variance_ > 1e-10 * det.explained_variance_[0]).sum())
            from pyod.models.pca import PCA

            det = PCA(n_components=rank, random_state=seed).fit(x_train)
            scores = np.asarray(det.decision_function(x_test), dtype=np.float64)
            return scores, f"n_components={rank} (the default gave non-finite scores)"
    return scores, None


def ours_scores(x_train: np.ndarray, x_test: np.ndarray, seed: int, workdir: Path,
                epochs: int | None = None, overrides: dict[str, Any] | None = None
                ) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Train a bundle with the product defaults (but ``overrides``, the training settings
    given as flags) and score the test rows through it: (scores, threshold, facts)."""
    from anomaly.inference import Scorer
    from training.pipeline import tabular_config, train_tabular

    settings: dict[str, Any] = {**(overrides or {}), "seed": seed, "progress": False}
    if epochs:
        settings["epochs"] = epochs  # --quick / --epochs only: a smoke run
    config = tabular_config(**settings)
    report = train_tabular(as_columns(x_train), workdir / "bundle", "odds", config)
    result = Scorer(report.path).score_rows(as_columns(x_test))
    thr = report.manifest.threshold
    facts = {"target_fpr": thr.target_fpr, "threshold": thr.value,
             "fpr_ci_reported": list(thr.fpr_ci), "rows_train": report.manifest.training.rows_train,
             "rows_calibration": thr.calibration_size, "best_epoch": report.fit.best_epoch,
             "epochs_run": report.fit.epochs_run}
    return result.scores, float(result.threshold), facts


def with_gaps(x: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A copy of ``x`` with ``fraction`` of its cells blanked (NaN) at random (``--gaps``):
    the same table as an export with missing values would hand it over."""
    rng = np.random.default_rng(10_000 + seed)
    out = x.copy()
    out[rng.random(x.shape) < fraction] = np.nan
    return out


def median_imputed(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What a PyOD user does with gaps (scikit-learn's ``SimpleImputer(strategy="median")``):
    every NaN becomes its column's median over the training rows. A no-op without gaps."""
    if not (np.isnan(x_train).any() or np.isnan(x_test).any()):
        return x_train, x_test
    median = np.nan_to_num(np.nanmedian(x_train, axis=0))
    return (np.where(np.isnan(x_train), median, x_train),
            np.where(np.isnan(x_test), median, x_test))


def run_one(table: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every detector on one (table, seed) split, in this process (a ``--jobs`` worker body)."""
    import torch

    torch.set_num_threads(args.threads)
    x, y = load_table(args.data, table)
    x_train, x_test, y_test = split(x, y, seed)
    if args.gaps:
        x_train = with_gaps(x_train, args.gaps, 2 * seed)
        x_test = with_gaps(x_test, args.gaps, 2 * seed + 1)
    out: dict[str, Any] = {"table": table, "seed": seed, "n_train": len(x_train),
                           "n_test": len(x_test), "n_test_outliers": int(y_test.sum()),
                           "dim": int(x.shape[1]), "metrics": {}, "errors": {}, "seconds": {}}
    for det in args.detectors:
        t = time.perf_counter()
        try:
            if det == OURS:
                with tempfile.TemporaryDirectory() as tmp:
                    scores, threshold, facts = ours_scores(x_train, x_test, seed, Path(tmp),
                                                           args.epochs, args.ours_settings)
                normal = y_test == 0
                out["ours"] = {**facts,
                               "test_fpr": float(np.mean(scores[normal] > threshold)),
                               "test_recall": float(np.mean(scores[~normal] > threshold))}
            else:
                scores, note = pyod_scores(det, *median_imputed(x_train, x_test), seed)
                if note:
                    out.setdefault("notes", {})[det] = note
            if not np.all(np.isfinite(scores)):
                raise FloatingPointError(f"{int((~np.isfinite(scores)).sum())} non-finite scores")
            out["metrics"][det] = {"auroc": auroc(scores, y_test), "auprc": auprc(scores, y_test)}
        except Exception as exc:  # a failure is a result here, not a crash of the benchmark
            out["errors"][det] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            if args.verbose:
                traceback.print_exc()
        out["seconds"][det] = round(time.perf_counter() - t, 2)
    return out


def effective(res: dict[str, Any], det: str) -> dict[str, float]:
    """A detector's metrics on one split; a failure counts at chance."""
    if det in res["metrics"]:
        return res["metrics"][det]
    return {"auroc": 0.5, "auprc": res["n_test_outliers"] / res["n_test"]}


def summarise(results: list[dict[str, Any]], detectors: tuple[str, ...]) -> dict[str, Any]:
    """Per table: mean over seeds of each detector's AUROC/AUPRC; per detector: mean AUROC,
    AUPRC and rank (1 = best AUROC on the table, ties averaged) over tables; failures."""
    tables = sorted({r["table"] for r in results}, key=lambda t: (*TABLES, t).index(t))
    per_table: dict[str, dict[str, dict[str, float]]] = {}
    ours_fpr: dict[str, dict[str, float]] = {}
    for t in tables:
        rs = [r for r in results if r["table"] == t]
        per_table[t] = {d: {m: float(np.mean([effective(r, d)[m] for r in rs]))
                            for m in ("auroc", "auprc")} for d in detectors}
        fprs = [r["ours"]["test_fpr"] for r in rs if "ours" in r]
        if fprs:
            ours_fpr[t] = {"test_fpr": float(np.mean(fprs)),
                           "target_fpr": rs[0]["ours"]["target_fpr"] if "ours" in rs[0] else
                           next(r["ours"]["target_fpr"] for r in rs if "ours" in r),
                           "seeds": len(fprs)}
    ranks: dict[str, list[float]] = {d: [] for d in detectors}
    for t in tables:
        vals = np.array([per_table[t][d]["auroc"] for d in detectors])
        order = (-vals).argsort(kind="stable")
        r = np.empty(len(vals))
        r[order] = np.arange(1, len(vals) + 1)
        for v in np.unique(vals):  # average the ranks of ties
            r[vals == v] = r[vals == v].mean()
        for d, rank in zip(detectors, r, strict=True):
            ranks[d].append(float(rank))
    mean = {d: {"auroc": float(np.mean([per_table[t][d]["auroc"] for t in tables])),
                "auprc": float(np.mean([per_table[t][d]["auprc"] for t in tables])),
                "rank": float(np.mean(ranks[d])),
                "failures": sum(d in r["errors"] for r in results),
                "seconds": float(np.mean([r["seconds"].get(d, 0.0) for r in results]))}
            for d in detectors}
    gap = {t: float(max(per_table[t][d]["auroc"] for d in detectors)
                    - per_table[t][OURS]["auroc"]) for t in tables} if OURS in detectors else {}
    return {"tables": tables, "per_table": per_table, "mean": mean, "ours_fpr": ours_fpr,
            "ours_gap_to_best": gap}


def table(summary: dict[str, Any], detectors: tuple[str, ...], metric: str = "auroc") -> str:
    """Markdown: tables x detectors (mean over seeds; best per table in bold), then the mean
    and mean rank; for AUROC also ours' test FPR at its threshold."""
    fpr = metric == "auroc" and bool(summary["ours_fpr"])
    head = "| table | " + " | ".join(detectors) + (" | ours FPR (target) |" if fpr else " |")
    lines = [head, "|" + "---|" * (len(detectors) + 1 + fpr)]
    for t in summary["tables"]:
        vals = {d: summary["per_table"][t][d][metric] for d in detectors}
        best = max(vals.values())
        cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in vals.values()]
        extra = ""
        if fpr:
            f = summary["ours_fpr"].get(t)
            extra = f" {f['test_fpr']:.3f} ({f['target_fpr']:g}) |" if f else " failed |"
        lines.append(f"| {t} | " + " | ".join(cells) + " |" + extra)
    mean = summary["mean"]
    lines.append("| **mean** | " + " | ".join(f"{mean[d][metric]:.3f}" for d in detectors)
                 + (" |" if not fpr else " |  |"))
    if metric == "auroc":
        lines.append("| mean rank | " + " | ".join(f"{mean[d]['rank']:.2f}" for d in detectors)
                     + (" |" if not fpr else " |  |"))
        lines.append("| failures | " + " | ".join(str(mean[d]["failures"]) for d in detectors)
                     + (" |" if not fpr else " |  |"))
    return "\n".join(lines)


def results_of(run: Callable[..., dict[str, Any]], tasks: list[tuple[str, int]], jobs: int,
               *extra: Any) -> Iterator[dict[str, Any]]:
    """``run(table, seed, *extra)`` per task, results as they finish (in this process, or in
    ``jobs`` spawned workers: every seed is per task, so the results do not depend on it)."""
    if jobs <= 1:
        for t, s in tasks:
            yield run(t, s, *extra)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = [pool.submit(run, t, s, *extra) for t, s in tasks]
        for future in as_completed(futures):
            yield future.result()


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/odds")
    p.add_argument("--quick", action="store_true",
                   help=f"tables {' and '.join(QUICK_TABLES)}, seed 0, 20 epochs: a smoke run")
    p.add_argument("--tables", nargs="+", choices=TABLES)
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    p.add_argument("--epochs", type=int, help="override ours' epochs (smoke runs only)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--suffix", default="", help="appended to the output file names")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--jobs", type=int, default=1, help="(table, seed) tasks run at once")
    p.add_argument("--gaps", type=float, default=0.0, metavar="FRACTION",
                   help="blank this share of the cells of every split (missing values at "
                        "random): ours gets the gaps, PyOD median-imputed rows")
    p.add_argument("--verbose", action="store_true", help="print the traceback of failures")
    group = p.add_argument_group(
        "ours: training settings", "each given flag replaces that product default in every "
        "split (measuring a candidate default; ours only, PyOD is unaffected)")
    settings = train_settings()
    add_arguments(group, settings)
    args = p.parse_args(argv)
    args.ours_settings = given(args, settings)
    return args


def train_settings() -> list[Setting]:
    """``anomaly train``'s settings, less those the protocol fixes (the seed is the split's;
    ``--epochs`` above is the smoke-run override) or that do not apply to tables."""
    from training.config import TrainConfig

    fixed = {"seed", "epochs", "device", "architecture", "likelihood", "conv_channels", "dense",
             "reference"}
    return dataclass_settings(TrainConfig, skip=fixed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_dir():
        print(f"ODDS data not found at {args.data}: skipped (pass --data)")
        return 0
    tables = args.tables or (list(QUICK_TABLES) if args.quick else list(TABLES))
    missing = [t for t in tables if not (args.data / f"{t}.mat").is_file()]
    if missing:
        print(f"skipped table(s) {missing}: no .mat file in {args.data}")
        tables = [t for t in tables if t not in missing]
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    if args.quick and not args.epochs:
        args.epochs = 20
    detectors = tuple(d for d in DETECTORS if d in args.detectors)
    args.detectors = detectors
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"odds{args.suffix}"
    meta = {"command": " ".join(["python", *sys.argv]),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{cpu_model()}, {args.jobs} job(s) x {args.threads} torch thread(s)",
            "epochs_override": args.epochs, "seeds": seeds, "detectors": list(detectors),
            "gaps": args.gaps, "ours_settings": args.ours_settings}
    tasks = [(t, s) for t in tables for s in seeds]
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    for res in results_of(run_one, tasks, args.jobs, args):
        results.append(res)
        results.sort(key=lambda r: (TABLES.index(r["table"]), r["seed"]))
        line = "  ".join(f"{d} {res['metrics'][d]['auroc']:.3f}" if d in res["metrics"]
                         else f"{d} FAILED" for d in detectors)
        fpr = (f"  ours FPR {res['ours']['test_fpr']:.3f} (target {res['ours']['target_fpr']:g})"
               if "ours" in res else "")
        print(f"{res['table']} seed {res['seed']}: {line}{fpr}  wall {res['seconds']}",
              flush=True)
        for d, err in res["errors"].items():
            print(f"  {d} failed: {err}", flush=True)
        Path(f"{stem}.json").write_text(json.dumps(
            {**meta, "summary": summarise(results, detectors), "runs": results,
             "wall_s": round(time.perf_counter() - started, 1)}, indent=1))
    if not results:
        print("nothing to run")
        return 0
    summary = summarise(results, detectors)
    md = ("AUROC (mean over seeds)\n\n" + table(summary, detectors, "auroc")
          + "\n\nAUPRC (mean over seeds)\n\n" + table(summary, detectors, "auprc"))
    print("\n" + md)
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    Path(f"{stem}.md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
