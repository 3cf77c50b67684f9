"""The HTML of the evaluation report (:mod:`anomaly.evaluation.report` gathers what goes in).

One page, no script, no external resource: figures are PNG data URIs, the style is inline,
and every piece of text from the data (paths, column names, values) is escaped.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
from dataclasses import dataclass, field

from anomaly.bundle import Bundle, TabularInput
from anomaly.calibration.metrics import ThresholdReport
from anomaly.evaluation.evaluate import EvaluationReport


@dataclass(frozen=True)
class TopAnomaly:
    """One of the highest-scoring samples: ``ident`` is its row (``file:row`` for a glob) or
    image path; ``heatmap`` the input | heat map | reconstruction PNG (images); ``columns``
    (column, value as read, score in nats) of the columns that contribute most (tables)."""

    ident: str
    score: float
    p_value: float
    anomalous: bool
    heatmap: bytes | None = None
    columns: list[tuple[str, str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Figures:
    """The page's PNGs: the evaluation's three, then the bundle's own by caption."""

    roc: bytes
    pr: bytes
    histogram: bytes
    bundle: dict[str, bytes] = field(default_factory=dict)


STYLE = """
:root { --ink: #1f2430; --muted: #5f6b7a; --line: #e3e7ee; --panel: #ffffff;
        --bg: #f5f7fa; --accent: #3b6fd8; --bad: #c62828; --good: #2e7d32; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 36px 0 12px; padding-bottom: 6px;
     border-bottom: 1px solid var(--line); }
.sub { color: var(--muted); margin: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(190px, 1fr));
         gap: 12px; margin-top: 22px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
        padding: 14px 16px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase;
           letter-spacing: .04em; }
.card .v { font-size: 26px; font-weight: 600; margin-top: 2px; }
.card .n { color: var(--muted); font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr));
        gap: 16px; }
figure { margin: 0; background: var(--panel); border: 1px solid var(--line);
         border-radius: 10px; padding: 12px; text-align: center; }
figure img { max-width: 100%; height: auto; }
figure.wide { margin-bottom: 16px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
table { width: 100%; border-collapse: collapse; background: var(--panel);
        border: 1px solid var(--line); border-radius: 10px; overflow: hidden; }
th, td { text-align: left; padding: 8px 12px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: #eef2f8; font-weight: 600; font-size: 13px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:last-child td { border-bottom: none; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px;
         font-weight: 600; color: #fff; }
.badge.bad { background: var(--bad); } .badge.good { background: var(--good); }
.tops { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr));
        gap: 16px; }
.tops figure { text-align: left; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px;
        word-break: break-all; }
.note { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_page(bundle: Bundle, report: EvaluationReport, figures: Figures,
                tops: list[TopAnomaly], source: str, generated: str) -> str:
    """The whole page as text."""
    m = bundle.manifest
    n = report.n_normal + report.n_anomalous
    c = report.at_calibrated
    try:
        version = importlib.metadata.version("vae-anomaly")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        version = "(not installed)"
    lo, hi = m.threshold.fpr_ci
    cards = [
        ("AUROC", f"{report.auroc:.3f}", "ranking quality: 1 is perfect, 0.5 is chance"),
        ("AUPRC", f"{report.auprc:.3f}",
         f"average precision; chance is {report.n_anomalous / n:.2f}"),
        ("Recall at the threshold", f"{c.recall:.1%}",
         f"{round(c.recall * report.n_anomalous)} of {report.n_anomalous} anomalies flagged"),
        ("False-positive rate", f"{c.fpr:.2%}",
         f"target {m.threshold.target_fpr:g}; calibration's {m.threshold.confidence:.0%} "
         f"interval {lo:.3f}-{hi:.3f}"),
    ]
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Evaluation of {esc(m.name)}</title><style>{STYLE}</style></head>",
        "<body><main>",
        f"<h1>Evaluation of <span class=\"mono\" style=\"font-size:24px\">{esc(m.name)}</span>"
        "</h1>",
        f'<p class="sub">{esc(m.kind)} bundle on <span class="mono">{esc(source)}</span>: '
        f"{n} samples, {report.n_normal} normal and {report.n_anomalous} anomalous"
        + (f", {report.rejected} could not be scored (reasons in "
           f'<span class="mono">{esc(report.rejects)}</span>)' if report.rejected else "")
        + "</p>",
        '<div class="cards">', *(_card(*card) for card in cards), "</div>",
        "<h2>How well it ranks</h2>", '<div class="grid">',
        _figure(figures.roc, "ROC curve: the red dot is the calibrated threshold"),
        _figure(figures.pr, "Precision-recall curve"), "</div>",
        "<h2>Scores and thresholds</h2>",
        _figure(figures.histogram, "Scores by label, with both thresholds", "wide"),
        _thresholds(report),
        '<p class="note">A sample is flagged when its score is above the threshold. The '
        "calibrated threshold is the bundle's, set on held-out normal data for the target "
        "false-positive rate; the F1-optimal one is chosen on these labels, so it is "
        "optimistic.</p>",
        f"<h2>Top {len(tops)} anomalies</h2>", _tops(tops, m.kind == "image"),
        "<h2>The bundle</h2>", _facts(bundle),
        '<div class="grid" style="margin-top:16px">',
        *(_figure(png, caption) for caption, png in figures.bundle.items()), "</div>",
        f"<footer>vae-anomaly {esc(version)}, generated {esc(generated)}. Per-sample scores: "
        f'<span class="mono">{esc(report.out_dir / "scores.csv")}</span>.</footer>',
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _card(key: str, value: str, note: str) -> str:
    return (f'<div class="card"><div class="k">{esc(key)}</div><div class="v">{esc(value)}'
            f'</div><div class="n">{esc(note)}</div></div>')


def _figure(png: bytes, caption: str, css_class: str = "") -> str:
    return (f'<figure class="{css_class}"><img src="{data_uri(png)}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _thresholds(report: EvaluationReport) -> str:
    rows = [("calibrated (the bundle's)", report.at_calibrated),
            ("F1-optimal (on these labels)", report.f1_optimal)]
    head = ("<tr><th>threshold</th><th class=num>score</th><th class=num>precision</th>"
            "<th class=num>recall</th><th class=num>F1</th><th class=num>FPR</th>"
            "<th class=num>flagged</th></tr>")
    return "<table>" + head + "".join(_threshold_row(name, t) for name, t in rows) + "</table>"


def _threshold_row(name: str, t: ThresholdReport) -> str:
    cells = [f"{t.threshold:.3f}", f"{t.precision:.3f}", f"{t.recall:.3f}", f"{t.f1:.3f}",
             f"{t.fpr:.4f}", str(t.flagged)]
    return f"<tr><td>{esc(name)}</td>" + "".join(f"<td class=num>{v}</td>" for v in cells) + \
        "</tr>"


def _badge(anomalous: bool) -> str:
    return ('<span class="badge bad">anomalous</span>' if anomalous
            else '<span class="badge good">normal: a false alarm</span>')


def _tops(tops: list[TopAnomaly], image: bool) -> str:
    if not tops:
        return '<p class="note">No samples were scored.</p>'
    if image:
        return '<div class="tops">' + "".join(
            f'<figure><img src="{data_uri(t.heatmap or b"")}" alt="heat map of '
            f'{esc(t.ident)}"><figcaption><span class="mono">{i}. {esc(t.ident)}</span><br>'
            f"score {t.score:.2f} nats, p-value {t.p_value:.3g} {_badge(t.anomalous)}"
            "</figcaption></figure>" for i, t in enumerate(tops, 1)) + "</div>" + \
            '<p class="note">Each: the input, where it scores badly (nats per pixel, over the ' \
            "input) and the model's reconstruction.</p>"
    head = ("<tr><th>#</th><th>row (0 = first data line)</th><th class=num>score</th>"
            "<th class=num>p-value</th>"
            "<th>label</th><th>columns that contribute most: value (nats)</th></tr>")
    body = "".join(
        f"<tr><td>{i}</td><td class=mono>{esc(t.ident)}</td><td class=num>{t.score:.2f}</td>"
        f"<td class=num>{t.p_value:.3g}</td><td>{_badge(t.anomalous)}</td><td>"
        + "<br>".join(f'<span class="mono">{esc(name)}</span> = {esc(value)} '
                      f"({nats:.1f})" for name, value, nats in t.columns)
        + "</td></tr>" for i, t in enumerate(tops, 1))
    return "<table>" + head + body + "</table>"


def _facts(bundle: Bundle) -> str:
    m = bundle.manifest
    t, tr = m.threshold, m.training
    if isinstance(m.input, TabularInput):
        numeric = sum(1 for col in m.input.columns if col.type == "numeric")
        shown = ", ".join(col.name for col in m.input.columns[:12])
        more = f", ... ({len(m.input.columns) - 12} more)" if len(m.input.columns) > 12 else ""
        input_text = (f"{len(m.input.columns)} columns ({numeric} numeric, "
                      f"{len(m.input.columns) - numeric} categorical): {shown}{more}")
    else:
        input_text = (f"images {m.input.channels} x {m.input.height} x {m.input.width}, "
                      f"pixels / {m.input.scale:g}")
    facts = [
        ("path", f'<span class="mono">{esc(bundle.path)}</span>'),
        ("created", esc(f"{m.created_at} (schema v{m.schema_version})")),
        ("input", esc(input_text)),
        ("model", esc(f"{m.model.architecture} VAE, {m.model.likelihood} likelihood, "
                      f"D = {m.model.input_dim}, latent {m.model.latent_dim}, "
                      f"L = {m.model.mc_samples} samples")),
        ("score", esc(m.model.score.replace("_", " ") + " (nats; higher = more anomalous)")),
        ("threshold", esc(f"{t.value:.4f} for target FPR {t.target_fpr:g} ({t.confidence:.0%} "
                          f"interval {t.fpr_ci[0]:.4f}-{t.fpr_ci[1]:.4f}, from "
                          f"{t.calibration_size} held-out normal scores)")),
        ("other thresholds", esc(", ".join(f"FPR {p.fpr:g}: {p.threshold:.3f}"
                                           for p in t.table))),
        ("training", esc(f"{tr.rows_train} rows, {tr.epochs} epochs (best {tr.best_epoch}), "
                         f"validation ELBO {tr.val_elbo:.3f} nats, {tr.duration_s:.1f} s on "
                         f"{tr.device}, seed {tr.seed}")),
        ("versions", esc(", ".join(f"{k} {v}" for k, v in tr.versions.items()))),
        ("model file", f'<span class="mono">{esc(m.files.model)} sha256 '
                       f"{esc(m.files.model_sha256)}</span>"),
    ]
    return "<table>" + "".join(f"<tr><th style=\"width:160px\">{esc(k)}</th><td>{v}</td></tr>"
                               for k, v in facts) + "</table>"
