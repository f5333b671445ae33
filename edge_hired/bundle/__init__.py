"""Exported bundles: the directory `edge-hired export` writes and `run --bundle` reads."""
