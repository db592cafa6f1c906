"""Frozen-feature evaluation shared by every modality: it only sees (N, D) features and (N,) int labels."""
from mae.eval.features import extract_features
from mae.eval.knn import knn_accuracy
from mae.eval.linear import linear_probe_accuracy
from mae.eval.rankme import rankme
from mae.eval.report import evaluate_features, format_summary

__all__ = [
    "evaluate_features",
    "extract_features",
    "format_summary",
    "knn_accuracy",
    "linear_probe_accuracy",
    "rankme",
]
