"""Facts of a tiled model (InternVL3/3.5, SmolVLM2 / Idefics3): what token selection needs.

These families cut an image into tiles plus a global view (`hired.tiles`). Their geometry
depends on the image processor as much as on the config: InternVL's `min_patches` /
`max_patches` (tiling forced on, as `InternVLProcessor` does) and SmolVLM's `size.longest_edge`
/ `max_image_size`. `TiledFacts` holds both, so the runtime, the planner and the exporter read
one object; without a processor (planning from a config) the reference defaults apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_hired.errors import ModelLoadError, expected
from edge_hired.hired.internvl_tiles import internvl_geometry
from edge_hired.hired.smolvlm_tiles import smolvlm_geometry
from edge_hired.hired.tiles import TileGeometry
from edge_hired.runtime.vision import LayerPlan, plan_layers

#: model_type -> tile family (Idefics3 is SmolVLM's architecture under its older name).
TILED_FAMILIES = {"internvl": "internvl", "smolvlm": "smolvlm", "idefics3": "smolvlm"}
#: HiRED's signal per tile family: InternViT has a CLS token, SigLIP has none.
TILED_SIGNALS = {"internvl": "cls", "smolvlm": "received"}


@dataclass(frozen=True)
class TiledFacts:
    """Geometry facts of a tiled model; `geometry_for` answers as `ModelFacts.geometry_for`."""

    family: str  # the config's model_type (internvl / smolvlm / idefics3)
    tile_size: int
    patch_size: int
    merge: int  # patches per LLM-token side after the pixel shuffle
    num_heads: int
    layers: LayerPlan
    image_token_id: int
    signal: str
    min_tiles: int = 1  # InternVL's min_patches
    max_tiles: int = 12  # InternVL's max_patches
    longest_edge: int = 0  # SmolVLM's size.longest_edge
    split: bool = True  # SmolVLM's do_image_splitting

    @property
    def tile_family(self) -> str:
        """ "internvl" or "smolvlm": which tiling rules apply."""
        return TILED_FAMILIES[self.family]

    @property
    def crop_size(self) -> int:
        """The encoder's input side (one tile)."""
        return self.tile_size

    @property
    def pinpoints(self) -> tuple[tuple[int, int], ...]:
        """No LLaVA pinpoints: the grid comes from the tiling rules."""
        return ()

    def geometry_for(self, image_size: tuple[int, int]) -> TileGeometry:
        """Token geometry of an image of (height, width)."""
        if self.tile_family == "internvl":
            ratio = 1 / self.merge
            return internvl_geometry(
                image_size, self.tile_size, self.patch_size, ratio, self.min_tiles, self.max_tiles
            )
        return smolvlm_geometry(
            image_size, self.tile_size, self.patch_size, self.merge, self.longest_edge, self.split
        )


def is_tiled(config: Any) -> bool:
    """Whether a model config belongs to a tiled family."""
    return getattr(config, "model_type", None) in TILED_FAMILIES


def tiled_facts(
    config: Any, image_processor: Any | None = None, l_init: int = 0, l_final: int | None = None
) -> TiledFacts:
    """Facts from the config and (when given) the checkpoint's image processor."""
    family = TILED_FAMILIES[config.model_type]
    vision = config.vision_config
    tile, patch = _side(vision.image_size, "image_size"), _side(vision.patch_size, "patch_size")
    feature_layer = getattr(config, "vision_feature_layer", -1)
    plan = plan_layers(feature_layer, vision.num_hidden_layers, l_init, l_final)
    common = {
        "family": config.model_type,
        "patch_size": patch,
        "merge": _merge(config, family),
        "num_heads": vision.num_attention_heads,
        "layers": plan,
        "image_token_id": config.image_token_id,
        "signal": TILED_SIGNALS[family],
    }
    if family == "internvl":
        return TiledFacts(tile_size=tile, **common, **_internvl_settings(image_processor))
    return TiledFacts(**common, **_smolvlm_settings(image_processor, tile))


def _side(value: Any, name: str) -> int:
    """One side of a square size given as an int or an (h, w) pair."""
    pair = list(value) if isinstance(value, list | tuple) else [value, value]
    if len(pair) != 2 or pair[0] != pair[1]:
        raise ModelLoadError(expected(f"vision {name}", "a square size", value))
    return int(pair[0])


def _merge(config: Any, family: str) -> int:
    """Patch-block side of the pixel shuffle: 1 / downsample_ratio (InternVL), scale_factor."""
    if family == "internvl":
        return round(1 / float(config.downsample_ratio))
    return int(config.scale_factor)


def _internvl_settings(processor: Any | None) -> dict[str, int]:
    """min / max tiles from `GotOcr2ImageProcessor` (tiling is on whatever it says)."""
    if processor is None:
        return {"min_tiles": 1, "max_tiles": 12}
    return {"min_tiles": int(processor.min_patches), "max_tiles": int(processor.max_patches)}


def _smolvlm_settings(processor: Any | None, tower_side: int) -> dict[str, Any]:
    """Tile side, longest edge and splitting from `SmolVLMImageProcessor` (4 tiles by default)."""
    if processor is None:
        return {"tile_size": tower_side, "longest_edge": 4 * tower_side, "split": True}
    return {
        "tile_size": int(processor.max_image_size["longest_edge"]),
        "longest_edge": int(processor.size["longest_edge"]),
        "split": bool(processor.do_image_splitting),
    }
