"""Exported bundles: the self-describing directory `edge-hired export` writes and `run --bundle` reads."""
