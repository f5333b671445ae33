"""Where a model comes from: an exported bundle directory, or a checkpoint (directory, hub id).

Kept free of torch so the planner's fact gatherers and the CLI can name a source cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_hired.errors import InvalidArgumentError, expected

SOURCE_KINDS = ("bundle", "model")


@dataclass(frozen=True)
class ModelSource:
    """A bundle directory ("bundle"), or a checkpoint directory / hub id ("model")."""

    kind: str
    path: str

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            choices = " or ".join(SOURCE_KINDS)
            raise InvalidArgumentError(expected("model source", choices, self.kind))
        if not isinstance(self.path, str) or not self.path.strip():
            raise InvalidArgumentError(expected(f"{self.kind} path", "non-empty text", self.path))
