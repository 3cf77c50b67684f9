"""Evaluation on labelled data, on top of batch scoring: metrics, threshold reports and the
figures people look at (``evaluate``), and the same as one self-contained HTML page
(``report``, whose markup is ``page``)."""

from anomaly.evaluation.evaluate import EvaluationReport, evaluate_path, evaluate_scores
from anomaly.evaluation.page import TopAnomaly
from anomaly.evaluation.report import HtmlReport, check_report_path, write_report

__all__ = ["EvaluationReport", "HtmlReport", "TopAnomaly", "check_report_path", "evaluate_path",
           "evaluate_scores", "write_report"]
