"""Evaluation on labelled data, on top of batch scoring: metrics, threshold reports and the
figures people look at (``evaluate``)."""

from anomaly.evaluation.evaluate import EvaluationReport, evaluate_path, evaluate_scores

__all__ = ["EvaluationReport", "evaluate_path", "evaluate_scores"]
