"""Batch scoring of tables: CSV, Parquet, globs, ids, explanations, bad rows, --fail-on-bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from anomaly.batch import ScoreOptions, score_path
from anomaly.batch.sources import read_table, table_columns
from anomaly.batch.stream import iter_table_chunks
from anomaly.errors import InputError
from anomaly.inference import Scorer
from tests.anomaly.batch.conftest import run_cli
from tests.conftest import make_tabular


def write_csv(path: Path, cols: dict[str, np.ndarray]) -> Path:
    pacsv.write_csv(pa.table(cols), path)
    return path


def chunked_reference(scorer: Scorer, cols: dict[str, np.ndarray], chunk: int) -> np.ndarray:
    """Scorer.score_rows over the same chunks the engine uses: must match bit for bit."""
    n = len(next(iter(cols.values())))
    return np.concatenate([scorer.score_rows({k: v[i : i + chunk] for k, v in cols.items()}
                                             ).scores for i in range(0, n, chunk)])


def test_csv_scores_equal_the_scorers(sensors_bundle: Path, tmp_path: Path) -> None:
    cols = make_tabular(1000, seed=1, anomalies=50)
    src = write_csv(tmp_path / "new.csv", cols)
    summary = score_path(sensors_bundle, src, tmp_path / "scores.csv",
                         ScoreOptions(chunk_rows=256, progress=False))
    out = pacsv.read_csv(tmp_path / "scores.csv")
    assert out.column_names == ["row", "score", "p_value", "is_anomaly"]
    assert out.column("row").to_pylist() == list(range(1000))
    scorer = Scorer(sensors_bundle)
    raw = table_columns(read_table(src))  # what the service and `anomaly evaluate` read
    expected = chunked_reference(scorer, raw, 256)
    np.testing.assert_array_equal(out.column("score").to_numpy(), expected)
    whole = scorer.score_rows(raw)  # one batch: same up to float32 rounding of the graph
    np.testing.assert_allclose(out.column("score").to_numpy(), whole.scores, rtol=1e-6)
    np.testing.assert_array_equal(out.column("p_value").to_numpy(), whole.p_values)
    flagged = out.column("is_anomaly").to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(flagged, expected > scorer.threshold)
    assert summary.scored == 1000 and summary.rejected == 0
    assert summary.anomalies == int(flagged.sum())
    assert not (tmp_path / "scores.rejects.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv", "scores.csv"]


def test_parquet_with_id_column_and_explanations(sensors_bundle: Path, tmp_path: Path) -> None:
    cols = make_tabular(700, seed=2, anomalies=30)
    cols["sensor_id"] = np.arange(5000, 5700, dtype=np.int64)
    cols["color"] = pa.array(cols["color"].tolist()).dictionary_encode()  # type: ignore[assignment]
    src = tmp_path / "new.parquet"
    pq.write_table(pa.table(cols), src, row_group_size=100)
    summary = score_path(sensors_bundle, src, tmp_path / "scores.parquet",
                         ScoreOptions(id_column="sensor_id", explain=2, chunk_rows=300,
                                      progress=False))
    out = pq.read_table(tmp_path / "scores.parquet")
    assert out.column_names == ["sensor_id", "score", "p_value", "is_anomaly", "top1_column",
                                "top1_score", "top2_column", "top2_score"]
    assert out.schema.field("sensor_id").type == pa.int64()
    assert out.column("sensor_id").to_pylist() == list(range(5000, 5700))
    scorer = Scorer(sensors_bundle)
    plain = {k: np.asarray(v) if k != "color" else np.asarray(v.to_pylist(), dtype=object)
             for k, v in cols.items()}
    np.testing.assert_array_equal(out.column("score").to_numpy(),
                                  chunked_reference(scorer, plain, 300))
    result = scorer.score_rows({k: v[:300] for k, v in plain.items()})
    tops = scorer.top_columns(result, 2)
    assert out.column("top1_column").to_pylist()[:300] == [t[0][0] for t in tops]
    np.testing.assert_array_equal(out.column("top2_score").to_numpy()[:300],
                                  [t[1][1] for t in tops])
    assert set(out.column("top1_column").to_pylist()) <= set(scorer.tabular.column_names)
    assert summary.scored == 700


def test_glob_of_csv_and_parquet_files(sensors_bundle: Path, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    a, b, c = (make_tabular(n, seed=s) for n, s in ((300, 3), (50, 4), (420, 5)))
    write_csv(parts / "a.csv", a)
    pq.write_table(pa.table(b), parts / "b.parquet")
    write_csv(parts / "c.csv", c)
    (parts / "README").write_text("not data")
    summary = score_path(sensors_bundle, str(parts / "*.[cp]*"), tmp_path / "all.csv",
                         ScoreOptions(chunk_rows=128, progress=False))
    out = pacsv.read_csv(tmp_path / "all.csv")
    assert out.column_names[:3] == ["file", "row", "score"]
    names = [str(parts / n) for n in ("a.csv", "b.parquet", "c.csv")]
    assert out.column("file").to_pylist() == [names[0]] * 300 + [names[1]] * 50 + \
        [names[2]] * 420
    assert out.column("row").to_pylist() == [*range(300), *range(50), *range(420)]
    scorer = Scorer(sensors_bundle)
    expected = np.concatenate([chunked_reference(scorer, t, 128) for t in (a, b, c)])
    np.testing.assert_array_equal(out.column("score").to_numpy(), expected)
    assert summary.scored == 770
    with pytest.raises(InputError, match="no files match"):
        score_path(sensors_bundle, str(parts / "*.nope"), tmp_path / "x.csv")
    with pytest.raises(InputError, match=r"README .*not a CSV .* or Parquet file"):
        score_path(sensors_bundle, str(parts / "*"), tmp_path / "x.csv")


def test_compressed_and_tab_separated_files_score_as_the_csv(sensors_bundle: Path,
                                                             tmp_path: Path) -> None:
    """The files exports and pipelines write besides ``.csv``: gzip, bz2 and zstd compressed
    CSV, a ``.tsv``, each alone and in a glob, score exactly as the plain CSV; a truncated
    gzip file is one clear error and no output."""
    import bz2
    import gzip

    cols = make_tabular(300, seed=9)
    plain = write_csv(tmp_path / "plain.csv", cols)
    body = plain.read_bytes()
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "a.csv.gz").write_bytes(gzip.compress(body))
    (parts / "b.csv.bz2").write_bytes(bz2.compress(body))
    with pa.output_stream(str(parts / "c.csv.zst"), compression="zstd") as out:
        out.write(body)
    (parts / "d.tsv").write_text(body.decode().replace(",", "\t"))
    options = ScoreOptions(chunk_rows=128, progress=False)
    score_path(sensors_bundle, plain, tmp_path / "want.csv", options)
    want = pacsv.read_csv(tmp_path / "want.csv").column("score").to_numpy()
    for part in sorted(parts.iterdir()):
        score_path(sensors_bundle, part, tmp_path / f"{part.name}.out.csv", options)
        got = pacsv.read_csv(tmp_path / f"{part.name}.out.csv").column("score").to_numpy()
        np.testing.assert_array_equal(got, want, err_msg=part.name)
    summary = score_path(sensors_bundle, str(parts / "*"), tmp_path / "all.parquet", options)
    assert summary.scored == 1200
    all_scores = pq.read_table(tmp_path / "all.parquet").column("score").to_numpy()
    np.testing.assert_array_equal(all_scores, np.tile(want, 4))
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(body)[:400])
    with pytest.raises(InputError, match=r"cannot read .*broken\.csv\.gz"):
        score_path(sensors_bundle, broken, tmp_path / "broken_out.csv", options)
    assert not (tmp_path / "broken_out.csv").exists()


BAD_CSV = """f0,f1,f2,f3,f4,f5,color,id
0.1,0.2,0.3,0.4,0.5,0.6,red,a0
0.1,oops,0.3,0.4,0.5,0.6,red,a1
0.1,0.2,0.3,0.4,0.5,0.6,blue,a2
0.1,0.2,,0.4,0.5,0.6,red,a3
0.1,0.2,0.3,0.4,0.5,red,a4
0.1,0.2,0.3,0.4,0.5,0.6,purple,a5
0.1,0.2,0.3,0.4,0.5,0.6,,a6
 0.25 ,0.2,0.3,1e-1,0.5,0.6,blue,a7
0.1,0.2,0.3,0.4,0.5,0.6,red,a8,extra
0.1,0.2,0.3,inf,0.5,0.6,red,a9
0.1,0.2,0.3,0.4,0.5,0.6,caf\xe9,a10
0.1,0.2,0.3,0.4,0.5,0.6,red,a11
"""
#: BAD_CSV as a UTF-8 file (``pürple``) with one stray Latin-1 byte (``caf\xe9``): the
#: mix that stays a reject of that row (a file all in Latin-1 is read as Latin-1).
BAD_BYTES = BAD_CSV.replace("purple", "pürple").encode().replace("café".encode(), b"caf\xe9")


def test_bad_rows_go_to_the_rejects_file(sensors_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_bytes(BAD_BYTES)
    summary = score_path(sensors_bundle, src, tmp_path / "out.csv",
                         ScoreOptions(id_column="id", chunk_rows=4, progress=False))
    out = pacsv.read_csv(tmp_path / "out.csv")
    assert out.column("id").to_pylist() == ["a0", "a2", "a5", "a7", "a11"]
    rejects = pacsv.read_csv(tmp_path / "out.rejects.csv", convert_options=pacsv.ConvertOptions(
        strings_can_be_null=True)).to_pylist()
    assert [(r["row"], r["id"]) for r in rejects] == [
        (1, "a1"), (3, "a3"), (4, None), (6, "a6"), (8, None), (9, "a9"), (10, "a10")]
    reasons = [r["reason"] for r in rejects]
    assert reasons[0] == "column 'f1': 'oops' is not a number"
    assert reasons[1] == "column 'f2': value is missing"
    assert reasons[2] == "malformed line: 7 fields where the header has 8"
    assert reasons[3] == "column 'color': value is missing"
    assert reasons[4] == "malformed line: 9 fields where the header has 8"
    assert reasons[5] == "column 'f3': value is inf (NaN or infinite)"
    assert "not valid UTF-8" in reasons[6]
    assert summary.scored == 5 and summary.rejected == 7
    assert summary.rejects == tmp_path / "out.rejects.csv"
    assert "rejected 7 bad rows/images" in summary.describe()
    # the good rows score as the scorer scores them (' 0.25 ' parses as Python's float does;
    # the unknown category 'purple' is scored, in the unknown slot)
    scorer = Scorer(sensors_bundle)
    rows = [{"f0": 0.1, "f1": 0.2, "f2": 0.3, "f3": 0.4, "f4": 0.5, "f5": 0.6, "color": c}
            for c in ("red", "blue", "purple")]
    rows.insert(3, {**rows[1], "f0": 0.25, "f3": 0.1})
    rows.append(rows[0])
    expected = scorer.score_rows(rows).scores
    np.testing.assert_allclose(out.column("score").to_numpy(), expected, rtol=1e-6)


def test_a_clean_rerun_removes_a_stale_rejects_file(sensors_bundle: Path,
                                                    tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_bytes(BAD_BYTES)
    score_path(sensors_bundle, src, tmp_path / "out.csv", ScoreOptions(progress=False))
    assert (tmp_path / "out.rejects.csv").exists()
    good = write_csv(tmp_path / "good.csv", make_tabular(20, seed=9))
    score_path(sensors_bundle, good, tmp_path / "out.csv", ScoreOptions(progress=False))
    assert not (tmp_path / "out.rejects.csv").exists()


def test_fail_on_bad_stops_with_one_line_and_writes_nothing(sensors_bundle: Path,
                                                            tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_bytes(BAD_BYTES)
    out = tmp_path / "out.parquet"
    out.write_bytes(b"an earlier result")  # must survive a failed run untouched
    proc = run_cli("score", sensors_bundle, src, "--out", out, "--fail-on-bad", "--quiet",
                   ok=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: row 1 of ")
    assert "'oops' is not a number; stopped by --fail-on-bad" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"an earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "out.parquet"]


def test_cli_summary_and_errors(sensors_bundle: Path, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "new.csv", make_tabular(300, seed=6, anomalies=20))
    proc = run_cli("score", sensors_bundle, src, "--out", tmp_path / "s.parquet",
                   "--explain", "1", "--chunk-rows", "100")
    assert "scored 300 samples" in proc.stdout and "local engine" in proc.stdout
    assert "calibrated FPR 0.05" in proc.stdout and f"wrote {tmp_path / 's.parquet'}" in \
        proc.stdout
    assert "row/s" in proc.stderr  # the progress bar
    no_color = {k: v for k, v in make_tabular(10, seed=7).items() if k != "color"}
    header_only = tmp_path / "h.csv"
    header_only.write_text("f0,f1,f2,f3,f4,f5,color\n")
    for args, message in [
        ([header_only], "has no data rows, only a header"),
        ([write_csv(tmp_path / "m.csv", no_color)], "missing column(s) ['color']"),
        ([src, "--id-column", "nope"], "--id-column 'nope' is not a column"),
        ([src, "--chunk-rows", "0"], "--chunk-rows must be at least 1"),
        ([src, "--heatmaps", tmp_path / "h"], "--heatmaps is for image models"),
        ([src, "--ray-address", "127.0.0.1:1"], "--ray-address needs --engine ray"),
    ]:
        proc = run_cli("score", sensors_bundle, *args, "--out", tmp_path / "o.csv", "--quiet",
                       ok=False)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        assert proc.stderr.startswith("error: ")
    assert not (tmp_path / "o.csv").exists()


def test_chunks_number_rows_across_blocks_and_malformed_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import anomaly.batch.stream

    monkeypatch.setattr(anomaly.batch.stream, "CSV_BLOCK_BYTES", 256)  # many parser blocks
    rng = np.random.default_rng(0)
    lines, bad = ["a,b,c"], set()
    for i in range(400):
        if rng.random() < 0.1:
            lines.append(f"{i},{i}")  # one field short
            bad.add(i)
        else:
            lines.append(f"{i},x{i},\"q,{i}\"")
    lines += ["400,1,2,3", "", "401,x,y"]  # a malformed and a blank line near the end
    bad.add(400)
    src = tmp_path / "t.csv"
    src.write_text("\n".join(lines) + "\n")
    chunks = list(iter_table_chunks(src, 7, ["a", "c"], chunk_rows=37))
    assert [c.num_rows for c in chunks] == [37] * 10 + [32]
    table = pa.concat_tables(chunks)
    assert table.column("__row").to_pylist() == list(range(402))
    assert set(table.column("__file").to_pylist()) == {7}
    rejected = {i for i, r in enumerate(table.column("__reject").to_pylist()) if r}
    assert rejected == bad
    for i, (a, c) in enumerate(zip(table.column("a").to_pylist(), table.column("c").to_pylist(),
                                   strict=True)):
        if i not in bad:
            assert a == str(i).encode() and (c == f"q,{i}".encode() or i == 401)


def test_csv_values_mean_what_type_inference_makes_of_them(tmp_path: Path) -> None:
    """Batch scoring reads CSV fields as text, chunk by chunk; the service, `anomaly train`
    and `anomaly evaluate` read whole files with Arrow's type inference. Both must hand the
    model the same x, also for categories that inference turns into numbers or booleans."""
    from anomaly.batch.chunks import X_COL, prepare_table_chunk, x_matrix
    from anomaly.batch.sink import ResultLayout
    from anomaly.bundle import CategoricalColumn, NumericColumn, TabularInput
    from anomaly.preprocessing import TabularPreprocessor

    schema = TabularInput(columns=[
        NumericColumn(name="a", mean=1.0, std=2.0),
        CategoricalColumn(name="flag", categories=["False", "True"]),  # trained on booleans
        CategoricalColumn(name="level", categories=["1", "2", "3"]),  # on floats 1.0, 2.0...
        CategoricalColumn(name="code", categories=["42", "7"]),  # on integers
        CategoricalColumn(name="name", categories=["1.0", "x"]),  # on strings
    ])
    src = tmp_path / "typed.csv"
    src.write_text("a,flag,level,code,name\n"
                   "1.5,true,1.0,7,x\n"
                   "-2,false,3.0,42,1.0\n"
                   "1e3,TRUE,2.0,007,x\n"
                   "0,true,4.0,8,y\n")
    prep = TabularPreprocessor(schema)
    (raw,) = iter_table_chunks(src, 0, prep.column_names, chunk_rows=100)
    prepared = prepare_table_chunk(prep, raw, ResultLayout("tabular", ("typed.csv",)), True)
    assert prepared.column("__reject").null_count == 4
    inferred = prep.transform(table_columns(read_table(src)))  # the service's CSV path
    np.testing.assert_array_equal(x_matrix(prepared), inferred.x)
    assert X_COL in prepared.column_names
    onehot = x_matrix(prepared)[:, 1:]
    assert onehot[:3].sum() == 12 and onehot[3, [2, 6, 9]].tolist() == [0, 1, 1]  # unknowns
