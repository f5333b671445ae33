"""Per-family export recipes, as data in the repository's top-level `export/recipes/` folder.

A recipe names the modules to export, the ONNX opset, the probe used for the parity check and
the tolerance declared for every ONNX output. Adding a family is adding a TOML file; every key
is checked (pydantic), and a bad one is a `RecipeError` naming the file and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, StrictStr
from pydantic.dataclasses import dataclass

from edge_hired.errors import EdgeHiredError, expected
from edge_hired.schema import SCHEMA, validate

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6)
    import tomli as tomllib  # type: ignore[no-redef]

RECIPES_ENV = "EDGE_HIRED_RECIPES"


class RecipeError(EdgeHiredError):
    """A missing or malformed export recipe."""


Count = Annotated[int, Field(strict=True, ge=1)]
Tolerance = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]


@dataclass(frozen=True, config=SCHEMA)
class Recipe:
    """How one model family is exported."""

    family: StrictStr
    model_class: StrictStr  # a transformers class name
    vision_tower: StrictStr  # attribute paths from the loaded model
    projector: StrictStr
    image_newline: StrictStr  # "" when the family has none
    default_opset: Count
    probe_partitions: Count
    tolerance: dict[str, dict[str, Tolerance]]  # export dtype -> ONNX output -> max |diff|

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
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path}: malformed recipe ({error})") from error
    return validate(Recipe, data, str(path), RecipeError)
