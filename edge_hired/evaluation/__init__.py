"""Accuracy of token dropping: metrics, question sets and the harness that runs them.

- `metrics`: VQAv2 accuracy, DocVQA ANLS, ChartQA relaxed accuracy, exact match (pure Python).
- `dataset`: JSONL question sets, validated line by line; `synthetic` draws the built-in one.
- `harness`: `evaluate(pipeline, rows, metric, ...)`, resumable; `records` holds its files
  (predictions.jsonl, run.json) and `report` its summary (summary.json, summary.md).
- `lmms_adapter`: the same pipeline as an lmms-eval model (optional extra `lmms`).

Importing this package is cheap: the harness and adapter (which need torch) load on demand.
"""
