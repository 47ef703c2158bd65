"""Evaluation: ROC metrics, the paper and online protocols of METHODS.md, and the JSON/PNG report."""
