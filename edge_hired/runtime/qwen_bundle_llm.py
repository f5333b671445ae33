"""A bundle's Qwen-VL language model, loaded into the stock VLM class without its vision tower.

The Qwen families prefill through the stock VLM forward (M-RoPE positions from `get_rope_index`,
DeepStack features at the image tokens, kept features as `mm_encoder_outputs`), so a bundle runs
that very forward: the VLM class is built on the meta device from the bundle's VLM config, its
text model and lm_head become the bundle's (quantized or not), and its vision tower becomes an
`AbsentVisionTower`, which holds no parameters and refuses to run (a bundle's tower is the ONNX
encoder). No byte of the tower is ever allocated.

The directory, as `edge_hired.export.language_model.save_native_language_model` writes it:
    config.json              the text config, with bitsandbytes' `quantization_config`, the saved
                             `dtype` and `tie_word_embeddings` (true: lm_head is the embedding)
    model.safetensors        the text model: embeddings, decoder layers, final norm
    lm_head.safetensors      {"weight": [vocab, hidden]}, unquantized; absent when tied
    generation_config.json   the VLM's generation config
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, GenerationConfig, PreTrainedModel

from edge_hired.errors import ModelLoadError, expected
from edge_hired.runtime.language_model import load_language_model, saved_quantization
from edge_hired.runtime.loading import NATIVE_FAMILIES, read_config

LM_HEAD_FILE = "lm_head.safetensors"
TOWER_ABSENT = (
    "vision tower: this bundle encodes images with its ONNX encoder; the language model holds "
    "no tower weights, so it cannot take pixel_values (pass mm_encoder_outputs)"
)
#: The text model's config fields that must agree with the VLM config's text_config.
SAME_MODEL_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")


class AbsentVisionTower(nn.Module):
    """Stands where the stock tower was: no parameters, the facts stock code reads, no forward.

    Stock `get_image_features` reads `dtype` and `spatial_merge_size` before calling the tower,
    so those answer; the call itself raises `TOWER_ABSENT`.
    """

    def __init__(self, vision_config: Any, dtype: torch.dtype) -> None:
        super().__init__()
        self.config = vision_config
        self.spatial_merge_size = int(vision_config.spatial_merge_size)
        self._dtype = dtype

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def forward(self, *_args: Any, **_kwargs: Any) -> Any:
        raise ModelLoadError(TOWER_ABSENT)


def kv_layer_indices(text_config: Any) -> list[int]:
    """The layers that keep keys and values (Qwen3.5's linear-attention ones keep a state)."""
    kinds = getattr(text_config, "layer_types", None)
    kinds = kinds or ["full_attention"] * int(text_config.num_hidden_layers)
    return [index for index, kind in enumerate(kinds) if kind == "full_attention"]


def load_native_llm(
    llm_dir: Path,
    vlm_config_dir: Path,
    device: torch.device,
    dtype: torch.dtype | None = None,
    quantization: str | None = None,
) -> PreTrainedModel:
    """The stock Qwen-VL class holding the bundle's text model and lm_head, with no tower.

    `dtype` None keeps the saved one (a quantized model loads only in it); `quantization`, when
    given (the manifest's), must be what config.json records. In eval mode, on `device`.
    """
    llm_dir, device = Path(llm_dir), torch.device(device)
    _check_quantization(llm_dir, quantization)
    config = _vlm_config(Path(vlm_config_dir))
    text_model = load_language_model(llm_dir, device, dtype, auto_class=AutoModel)
    _check_same_model(config.text_config, text_model.config, llm_dir)
    vlm = _assemble(config, text_model, _lm_head(llm_dir, text_model))
    vlm.generation_config = GenerationConfig.from_pretrained(llm_dir)
    return vlm.eval()


def _check_quantization(llm_dir: Path, quantization: str | None) -> None:
    saved = saved_quantization(llm_dir)
    if quantization is not None and quantization != saved:
        raise ModelLoadError(expected(f"{llm_dir}: saved quantization", quantization, saved))


def _vlm_config(directory: Path) -> Any:
    """The bundle's VLM config, refusing anything but the Qwen-VL families."""
    config = read_config(str(directory))
    if config.model_type not in NATIVE_FAMILIES:
        want = " or ".join(NATIVE_FAMILIES)
        raise ModelLoadError(expected(f"{directory}: model type", want, config.model_type))
    return config


def _check_same_model(want: Any, got: Any, llm_dir: Path) -> None:
    """The text model must be the one the VLM config describes."""
    for field in SAME_MODEL_FIELDS:
        wanted, found = getattr(want, field, None), getattr(got, field, None)
        if wanted != found:
            raise ModelLoadError(expected(f"{llm_dir}: text model {field}", wanted, found))


def _lm_head(llm_dir: Path, text_model: PreTrainedModel) -> nn.Linear:
    """The output projection: the embedding matrix when tied, else `lm_head.safetensors`."""
    embed = text_model.get_input_embeddings()
    tied = bool(getattr(text_model.config, "tie_word_embeddings", False))
    path = llm_dir / LM_HEAD_FILE
    if tied == path.is_file():
        want = "none (lm_head is tied to the embeddings)" if tied else "the file"
        raise ModelLoadError(expected(str(path), want, "a file" if tied else "none"))
    head = nn.Linear(embed.embedding_dim, embed.num_embeddings, bias=False, device="meta")
    head.weight = embed.weight if tied else _head_weight(path, embed.weight)
    return head


def _head_weight(path: Path, embedding: torch.Tensor) -> nn.Parameter:
    """lm_head's weight read onto the embedding's device, in its dtype, shape checked."""
    from safetensors.torch import load_file

    tensors = load_file(str(path), device=str(embedding.device))
    weight = tensors.get("weight")
    if weight is None or tuple(weight.shape) != tuple(embedding.shape):
        got = None if weight is None else tuple(weight.shape)
        raise ModelLoadError(expected(f"{path}: weight", tuple(embedding.shape), got))
    return nn.Parameter(weight.to(embedding.dtype), requires_grad=False)


def _assemble(config: Any, text_model: PreTrainedModel, head: nn.Linear) -> PreTrainedModel:
    """The VLM class built on meta, then given the text model, lm_head and the absent tower."""
    import transformers

    model_class = getattr(transformers, NATIVE_FAMILIES[config.model_type])
    with torch.device("meta"):
        vlm = model_class(config)
    vlm.model.language_model = text_model
    vlm.model.visual = AbsentVisionTower(config.vision_config, text_model.dtype)
    vlm.lm_head = head
    vlm.config.text_config = text_model.config  # one config for the decoder that runs
    left = [n for n, t in [*vlm.named_parameters(), *vlm.named_buffers()] if t.is_meta]
    if left:
        raise ModelLoadError(expected("bundle language model tensors", "all loaded", left[:5]))
    return vlm
