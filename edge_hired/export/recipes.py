"""Per-family export recipes, as data in the repository's top-level `export/recipes/` folder.

A recipe names the modules to export, the ONNX opset, the probe used for the parity check and
the tolerance declared for every ONNX output. Adding a family is adding a TOML file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edge_hired.errors import EdgeHiredError, expected

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6)
    import tomli as tomllib  # type: ignore[no-redef]

RECIPES_ENV = "EDGE_HIRED_RECIPES"


class RecipeError(EdgeHiredError):
    """A missing or malformed export recipe."""


@dataclass(frozen=True)
class Recipe:
    """How one model family is exported."""

    family: str
    model_class: str
    vision_tower: str
    projector: str
    image_newline: str
    default_opset: int
    probe_partitions: int
    tolerance: dict[str, dict[str, float]]

    def tolerance_for(self, dtype_name: str) -> dict[str, float]:
        """Per-output tolerances for an export dtype ("float32" or "float16")."""
        if dtype_name not in self.tolerance:
            raise RecipeError(
                expected(f"recipe {self.family}: tolerance", sorted(self.tolerance), dtype_name)
            )
        return self.tolerance[dtype_name]


def recipes_dir() -> Path:
    """`$EDGE_HIRED_RECIPES`, else the repository's export/recipes next to the package."""
    override = os.environ.get(RECIPES_ENV)
    return (
        Path(override) if override else Path(__file__).resolve().parents[2] / "export" / "recipes"
    )


def load_recipe(family: str) -> Recipe:
    """The recipe of a model family (the config's model_type)."""
    path = recipes_dir() / f"{family}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in recipes_dir().glob("*.toml"))
        raise RecipeError(expected(f"export recipe for model type {family!r}", known, str(path)))
    try:
        data = tomllib.loads(path.read_text())
        return Recipe(**data)
    except (tomllib.TOMLDecodeError, TypeError) as error:
        raise RecipeError(f"{path}: malformed recipe ({error})") from error
