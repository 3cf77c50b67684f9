"""``anomaly evaluate --report``: one self-contained HTML page built from the evaluation's
scores.csv; its numbers are the evaluation's and its top anomalies the highest scores, with
heat maps (images) or the columns that contribute most (tables) from the Scorer."""

from __future__ import annotations

import base64
import io
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from PIL import Image

from anomaly.cli.main import main
from anomaly.errors import InputError
from anomaly.evaluation import check_report_path, evaluate_path, write_report
from anomaly.inference import Scorer
from tests.anomaly.evaluation.conftest import Made
from tests.conftest import make_tabular

DATA_PNG = "data:image/png;base64,"


class Page(HTMLParser):
    """The page's images, external references and scripts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.scripts = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "script":
            self.scripts += 1
        for key in ("href", "src"):
            value = values.get(key) or ""
            if value and not value.startswith("data:"):
                self.external.append(value)


def decoded_images(path: Path) -> list[Image.Image]:
    page = Page(path.read_text())
    assert page.external == [] and page.scripts == 0
    assert all(src.startswith(DATA_PNG) for src in page.images)
    images = [Image.open(io.BytesIO(base64.b64decode(src[len(DATA_PNG):])))
              for src in page.images]
    for image in images:
        image.load()  # raises on a truncated or corrupt PNG
        assert image.width > 50 and image.height > 50
    return images


def top_by_score(scores_csv: Path, k: int) -> list[dict[str, object]]:
    rows = pacsv.read_csv(scores_csv).to_pylist()
    return sorted(rows, key=lambda r: -float(r["score"]))[:k]  # type: ignore[arg-type]


def test_table_report_is_one_self_contained_page(table_report: Made) -> None:
    text = table_report.page.path.read_text()
    # ROC, precision-recall, histogram, and the bundle's training curve and calibration plot
    assert len(decoded_images(table_report.page.path)) == 5
    assert "http://" not in text and "https://" not in text and "url(" not in text


def test_table_report_numbers_are_the_evaluations(table_report: Made) -> None:
    text = table_report.page.path.read_text()
    ev = table_report.evaluation
    assert f"<div class=\"v\">{ev.auroc:.3f}</div>" in text
    assert f"<div class=\"v\">{ev.auprc:.3f}</div>" in text
    for t in (ev.at_calibrated, ev.f1_optimal):
        cells = [f"{t.threshold:.3f}", f"{t.precision:.3f}", f"{t.recall:.3f}", f"{t.f1:.3f}",
                 f"{t.fpr:.4f}", str(t.flagged)]
        assert "".join(f"<td class=num>{c}</td>" for c in cells) in text
    assert f"{ev.n_normal} normal and {ev.n_anomalous} anomalous" in text


def test_table_top_rows_are_the_highest_scores_with_their_top_columns(
        table_report: Made, tabular_bundle: Path) -> None:
    tops = table_report.page.top
    expected = top_by_score(table_report.evaluation.out_dir / "scores.csv", 5)
    assert [t.ident for t in tops] == [str(r["row"]) for r in expected]
    assert [t.score for t in tops] == pytest.approx([r["score"] for r in expected], rel=1e-12)
    assert [t.anomalous for t in tops] == [r["label"] == 1 for r in expected]
    cols = make_tabular(300, seed=4, anomalies=30)  # the rows the CSV holds
    rows = [int(r["row"]) for r in expected]  # type: ignore[call-overload]
    scorer = Scorer(tabular_bundle)
    result = scorer.score_rows({k: v[rows] for k, v in cols.items()})
    assert result.scores == pytest.approx([t.score for t in tops], rel=1e-6)
    for top, want in zip(tops, scorer.top_columns(result, 3), strict=True):
        assert [c for c, _, _ in top.columns] == [c for c, _ in want]
        assert [n for _, _, n in top.columns] == pytest.approx([n for _, n in want], rel=1e-6)
    text = table_report.page.path.read_text()
    name, value, _ = tops[0].columns[0]
    assert f'<span class="mono">{name}</span> = {value} (' in text


def test_a_glob_of_tables_names_rows_by_file(tabular_bundle: Path, tmp_path: Path) -> None:
    cols = make_tabular(120, seed=5, anomalies=12)
    for part, rows in (("a", slice(0, 60)), ("b", slice(60, 120))):
        pacsv.write_csv(pa.table({k: v[rows] for k, v in cols.items()}), tmp_path / f"{part}.csv")
    source = str(tmp_path / "*.csv")
    ev = evaluate_path(tabular_bundle, source, "is_anomaly", tmp_path / "ev", progress=False)
    page = write_report(tabular_bundle, source, ev, tmp_path / "r.html", top=3)
    best = int(np.argmax(Scorer(tabular_bundle).score_rows(cols).scores))
    assert page.top[0].ident == (f"a.csv:{best}" if best < 60 else f"b.csv:{best - 60}")


def test_image_report_shows_heat_maps_of_the_top_images(image_report: Made,
                                                        digits_bundle: Path) -> None:
    tops = image_report.page.top
    expected = top_by_score(image_report.evaluation.out_dir / "scores.csv", 4)
    assert [t.ident for t in tops] == [r["path"] for r in expected]
    # 3 evaluation figures, 2 from the bundle, 4 heat maps
    images = decoded_images(image_report.page.path)
    assert len(images) == 9
    assert all(t.heatmap is not None and t.heatmap.startswith(b"\x89PNG") for t in tops)
    scorer = Scorer(digits_bundle)
    again = scorer.score_images([(image_report.source / t.ident).read_bytes() for t in tops])
    assert again.scores == pytest.approx([t.score for t in tops], rel=1e-6)
    assert [t.anomalous for t in tops] == [t.ident.startswith("anomalous/") for t in tops]


def test_text_from_the_data_is_escaped(image_report: Made, digits_bundle: Path,
                                       tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    for sub in ("normal", "anomalous"):
        (folder / sub).mkdir(parents=True)
        for f in sorted((image_report.source / sub).iterdir())[:3]:
            shutil.copy(f, folder / sub / f.name)
    shutil.copy(f, folder / "anomalous" / "<b>&x.png")
    ev = evaluate_path(digits_bundle, folder, out_dir=tmp_path / "ev", progress=False)
    page = write_report(digits_bundle, folder, ev, tmp_path / "r.html", top=100)
    text = page.path.read_text()
    assert len(page.top) == 7  # every image, when top exceeds them
    assert "anomalous/&lt;b&gt;&amp;x.png" in text and "<b>&x" not in text


def test_cli_writes_the_report(tabular_bundle: Path, table_report: Made, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "page.html"
    code = main(["evaluate", str(tabular_bundle), str(table_report.source), "--label-column",
                 "is_anomaly", "--out-dir", str(tmp_path / "ev"), "--report", str(out),
                 "--top", "2", "--quiet"])
    assert code == 0
    assert f"wrote the report to {out}" in capsys.readouterr().out
    assert out.read_text().count("<span class=\"badge") == 2


@pytest.mark.parametrize(("report", "message"), [
    ("page.txt", "must end in .html"),
    ("missing/page.html", "does not exist"),
    (".", "must end in .html"),
])
def test_cli_refuses_a_bad_report_path_before_scoring(
        tabular_bundle: Path, table_report: Made, tmp_path: Path, report: str, message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", str(tabular_bundle), str(table_report.source), "--label-column",
                 "is_anomaly", "--out-dir", str(tmp_path / "ev"), "--report",
                 str(tmp_path / report), "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: --report") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ev").exists()


def test_report_path_checks(tmp_path: Path) -> None:
    (tmp_path / "dir.html").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        check_report_path(tmp_path / "dir.html")
    assert check_report_path(tmp_path / "ok.HTML") == tmp_path / "ok.HTML"
