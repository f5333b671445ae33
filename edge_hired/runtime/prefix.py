"""The prompt's visual prefix, built in one place for `run`, `serve` and the evaluators.

A prompt splits at its one image placeholder: the *prefix* is the text before it plus the kept
visual tokens (what an image cache can reuse), the *suffix* the text after it. Here live the
steps from an image to the prefix's embeddings: preprocess, select (the HiRED core), project.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch
from PIL import Image

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired import FEATURE_STRATEGIES, RESIZE, Selection, select_tokens
from edge_hired.hired.geometry import ImageGeometry
from edge_hired.hired.tile_select import select_tile_tokens
from edge_hired.hired.tiles import TileGeometry
from edge_hired.runtime.assemble import image_token_position, visual_sequence
from edge_hired.runtime.loading import NativeFacts, VlmParts
from edge_hired.runtime.qwen_prefix import native_preprocess, resize_preprocess
from edge_hired.runtime.tiled_prefix import tiled_prefix_embeddings
from edge_hired.runtime.vision import VisionOutput

MERGING = ("prumerge", "prumerge+")


@dataclass(frozen=True)
class SelectionOptions:
    """How many visual tokens to keep and how to choose them."""

    strategy: str = "hired"
    ratio: float | None = None
    tokens: int | None = None
    cap: int | None = None
    alpha: float = 0.5
    newline: str = "none"
    seed: int = 0


@dataclass(frozen=True)
class ImageInput:
    """A decoded image and the sha256 of its bytes (the cache key; None: never cached)."""

    picture: Image.Image
    sha256: str | None = None

    @classmethod
    def from_bytes(cls, picture: Image.Image, data: bytes) -> ImageInput:
        return cls(picture, hashlib.sha256(data).hexdigest())


def split_at_image(ids: torch.Tensor, image_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids before, ids after) the prompt's one image placeholder."""
    position = image_token_position(ids, image_token_id)
    return ids[:position], ids[position + 1 :]


def preprocess(
    parts: VlmParts, picture: Image.Image, selection: SelectionOptions | None = None
) -> tuple[torch.Tensor, ImageGeometry]:
    """Pixel values [P, 3, H, W] on the host, and the image's token geometry.

    The Qwen families give their patches and grid instead (`NativePixels`); for the `resize`
    baseline (`selection`), of the image shrunk to the budget.

    The encoder moves pixels where it runs: the in-process encoder to its weights' device,
    ONNX Runtime takes host memory (a copy to CUDA here would only come straight back).
    """
    resize = selection is not None and selection.strategy == RESIZE
    if isinstance(parts.facts, NativeFacts) and resize:
        return resize_preprocess(parts.processor, parts.facts, picture, selection)
    if resize:
        want = "a Qwen-VL model here (tiled models: run, bench and eval)"
        raise InvalidArgumentError(expected("strategy resize", want, parts.facts.family))
    geometry = parts.facts.geometry_for((picture.height, picture.width))
    if isinstance(parts.facts, NativeFacts):
        return native_preprocess(parts.processor, geometry, picture)
    batch = parts.processor.image_processor(images=picture, return_tensors="pt")
    pixels = batch["pixel_values"].reshape(-1, *batch["pixel_values"].shape[-3:])
    if pixels.shape[0] != geometry.num_partitions:
        raise InvalidArgumentError(
            expected(
                "partitions from the image processor", geometry.num_partitions, pixels.shape[0]
            )
        )
    return pixels, geometry


def select(geometry: ImageGeometry, vision: VisionOutput, options: SelectionOptions) -> Selection:
    """Run the HiRED core on the encoder's attention rows."""
    if options.strategy == RESIZE:
        return resize_selection(geometry, vision)
    if isinstance(geometry, TileGeometry):
        return select_tiles(geometry, vision, options)
    keys = vision.keys_final.float().cpu().numpy() if options.strategy in MERGING else None
    features = token_features(vision) if options.strategy in FEATURE_STRATEGIES else None
    return select_tokens(
        geometry,
        options.strategy,
        *_signal_rows(vision),
        **_budget_kwargs(options),
        newline=options.newline,
        keys=keys,
        features=features,
    )


def _signal_rows(vision: VisionOutput) -> tuple[object, object]:
    """The encoder's layer-0 and feature-layer rows on the host (numpy), as the core takes them."""
    return vision.cls_init.cpu().numpy(), vision.cls_final.cpu().numpy()


def _budget_kwargs(options: SelectionOptions) -> dict[str, object]:
    """How many tokens to keep and HiRED's split, as every selection core takes them."""
    return {
        "ratio": options.ratio,
        "tokens": options.tokens,
        "cap": options.cap,
        "alpha": options.alpha,
        "seed": options.seed,
    }


def resize_selection(geometry: ImageGeometry, vision: VisionOutput) -> Selection:
    """Every token of the shrunk image; the budget reported is the K it was shrunk to."""
    kept = select_tokens(geometry, RESIZE, None, None, tokens=geometry.num_tokens)
    return replace(kept, budget=int(getattr(vision, "resize_budget", None) or kept.budget))


def token_features(vision: VisionOutput) -> object:
    """What DART compares, [P, N, D] float32: the features the LLM's tokens are made from
    (Qwen: the merged visual tokens; LLaVA: the feature layer's patch features)."""
    return vision.features.float().cpu().numpy()


def select_tiles(
    geometry: TileGeometry, vision: VisionOutput, options: SelectionOptions
) -> Selection:
    """HiRED on a tiled image: per-patch rows (partition order) summed over each token's block."""
    return select_tile_tokens(
        geometry, options.strategy, *_signal_rows(vision), **_budget_kwargs(options)
    )


def text_embeddings(parts: VlmParts, ids: torch.Tensor) -> torch.Tensor:
    """[T, D] input embeddings of token ids, on the LLM's device."""
    return parts.llm.get_input_embeddings()(ids.to(parts.device))


@torch.inference_mode()
def prefix_embeddings(
    parts: VlmParts, ids: torch.Tensor, vision: VisionOutput, chosen: Selection
) -> torch.Tensor:
    """[1, P, D]: the text before the image, then the kept visual tokens (and newlines)."""
    if isinstance(chosen.geometry, TileGeometry):
        return tiled_prefix_embeddings(parts, ids, vision, chosen)
    text = text_embeddings(parts, ids)
    visual = visual_sequence(vision.features, chosen, parts.projector, parts.image_newline)
    return torch.cat([text, visual.to(text.dtype)])[None]


@torch.inference_mode()
def prompt_embeddings(
    parts: VlmParts, ids: torch.Tensor, vision: VisionOutput, chosen: Selection
) -> torch.Tensor:
    """[1, T, D]: the whole prompt, the kept visual tokens in the image placeholder's place."""
    before, after = split_at_image(ids, parts.facts.image_token_id)
    prefix = prefix_embeddings(parts, before, vision, chosen)
    return torch.cat([prefix, text_embeddings(parts, after)[None].to(prefix.dtype)], dim=1)
