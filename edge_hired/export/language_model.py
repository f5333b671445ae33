"""The bundle's language model: cut out of the LLaVA model, quantized offline, loaded on the device.

`extract_causal_lm` turns the VLM's decoder + lm_head into a standalone causal LM of the text
config's architecture (e.g. LlamaForCausalLM) holding the very same tensors. `save_language_model`
writes it with `save_pretrained` (safetensors only) either unquantized or quantized by bitsandbytes
through transformers' `BitsAndBytesConfig`; `edge_hired.runtime.language_model` loads it back.

The Qwen-VL families (Qwen3-VL, Qwen2.5-VL, Qwen3.5) keep their stock VLM forward on the device
(M-RoPE positions, DeepStack, `mm_encoder_outputs`), so for them `save_native_language_model` saves
the VLM's text model (`model.model.language_model`) as it is, plus `lm_head` on its own, and
`edge_hired.runtime.qwen_bundle_llm` rebuilds the stock VLM around them without a vision tower.

Quantization choices (made in `edge_hired.runtime.language_model`, which also quantizes at load):
- 4bit: NF4, blocksize 64, *double quantization on*. Double quantization stores the per-block
  absmax as uint8 (plus one fp32 scale per 256 blocks) instead of fp32: ~0.37 bit/weight less,
  ~0.3 GB on a 7B model, which matters on an 8 GB Jetson; QLoRA found no accuracy cost. Compute
  dtype is the requested one (fp16 by default; fp32/bf16 when asked).
- 8bit: LLM.int8 (outlier threshold 6.0), compute in fp16 only: int8 matmuls take fp16
  activations and bitsandbytes warns on every matmul when given fp32.
- Kept unquantized: the output projection (`lm_head`): quantizing the last projection costs the
  most quality per byte saved, and with tied embeddings it is the embedding matrix. Embeddings and
  norms are not Linear layers, so bitsandbytes never touches them.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoModelForCausalLM, PreTrainedModel

from edge_hired.bundle.manifest import LlmSpec
from edge_hired.device.bitsandbytes_check import require_bitsandbytes
from edge_hired.errors import InvalidArgumentError, ModelLoadError, expected
from edge_hired.runtime.language_model import (
    bitsandbytes_config,
    check_choice,
    dtype_name,
    weight_files,
)
from edge_hired.runtime.loading import LINEAR_ATTENTION_GATES, NATIVE_FAMILIES
from edge_hired.runtime.qwen_bundle_llm import LM_HEAD_FILE, kv_layer_indices

Progress = Callable[[str], None]


# --- extraction ------------------------------------------------------------------------------


def extract_causal_lm(vlm: PreTrainedModel) -> PreTrainedModel:
    """The VLM's language model + lm_head as a standalone causal LM sharing the VLM's tensors.

    Built on the meta device from `vlm.config.text_config` (no random initialisation, no copy),
    then given the VLM's parameters and buffers; any missing or unexpected key is an error.
    """
    decoder, head = _vlm_parts(vlm)
    config = copy.deepcopy(vlm.config.text_config)
    config.tie_word_embeddings = head.weight is decoder.get_input_embeddings().weight
    with torch.device("meta"):
        causal_lm = AutoModelForCausalLM.from_config(config, dtype=head.weight.dtype)
    _load_exactly(causal_lm.get_decoder(), decoder, "language model")
    _load_exactly(causal_lm.get_output_embeddings(), head, "lm_head")
    if config.tie_word_embeddings:
        causal_lm.tie_weights()
    _check_materialised(causal_lm)
    causal_lm.generation_config = copy.deepcopy(vlm.generation_config)
    return causal_lm.eval()


def _vlm_parts(vlm: PreTrainedModel) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The VLM's decoder stack and output projection, or a ModelLoadError naming what is absent."""
    inner = getattr(vlm, "model", None)
    decoder = getattr(inner, "language_model", None) or getattr(inner, "text_model", None)
    head = vlm.get_output_embeddings() if hasattr(vlm, "get_output_embeddings") else None
    if decoder is None or head is None or getattr(vlm.config, "text_config", None) is None:
        raise ModelLoadError(
            expected(
                "model",
                "a LLaVA model with model.language_model, lm_head and text_config",
                type(vlm).__name__,
            )
        )
    return decoder, head


def _load_exactly(target: torch.nn.Module, source: torch.nn.Module, what: str) -> None:
    """Give `target` the tensors of `source` (assigned, not copied), refusing key mismatches."""
    result = target.load_state_dict(source.state_dict(), strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(
            f"{what}: the checkpoint does not match its text config "
            f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
    sources = dict(source.named_buffers())
    for name, buffer in list(target.named_buffers()):
        if buffer.is_meta and name in sources:  # non-persistent (rotary inv_freq): not in a
            parent, _, leaf = name.rpartition(".")  # state dict; left-overs are reported later
            setattr(target.get_submodule(parent), leaf, sources[name])


def _check_materialised(model: torch.nn.Module) -> None:
    """Every parameter and buffer must have left the meta device."""
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ModelLoadError(expected("language model tensors", "all loaded", left[:5]))


# --- quantization settings -------------------------------------------------------------------


def modules_to_keep(causal_lm: PreTrainedModel) -> list[str]:
    """Full module paths never quantized: the output projection (lm_head)."""
    head = causal_lm.get_output_embeddings()
    return [name for name, module in causal_lm.named_modules() if module is head]


# --- save ------------------------------------------------------------------------------------


def save_language_model(
    causal_lm: PreTrainedModel,
    out_dir: Path,
    quantization: str,
    compute_dtype: torch.dtype,
    progress: Progress | None = None,
) -> LlmSpec:
    """Write `causal_lm` into the new or empty `out_dir` (safetensors, config, generation config).

    Quantization runs on the CPU: the model is saved unquantized to a temporary sibling of
    `out_dir`, reloaded with the bitsandbytes config and saved again. `causal_lm` is not changed.
    `progress` receives a short line per step. The returned spec has `projector_bytes=0`.
    """
    check_choice(quantization, compute_dtype)
    out_dir = _new_directory(Path(out_dir))
    settings = bitsandbytes_config(quantization, compute_dtype, modules_to_keep(causal_lm))
    model = _save_through_bitsandbytes(
        causal_lm, AutoModelForCausalLM, out_dir, settings, (quantization, compute_dtype), progress
    )
    weight_bytes = sum(p.stat().st_size for p in weight_files(out_dir))
    return llm_spec(model, quantization, compute_dtype, weight_bytes)


def _save_through_bitsandbytes(
    model: PreTrainedModel,
    auto_class: type,
    out_dir: Path,
    settings: Any,
    choice: tuple[str, torch.dtype],
    progress: Progress | None,
) -> PreTrainedModel:
    """Stage `model` unquantized beside `out_dir`, reload it as `choice` asks, save it there.

    Returns the reloaded (quantized or cast) model, whose config is the one written.
    """
    quantization, compute_dtype = choice
    say = progress or (lambda _line: None)
    require_bitsandbytes(quantization, torch.device("cpu"))
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}-", dir=out_dir.parent) as staging:
        say(f"language model: staging unquantized weights in {staging}")
        model.save_pretrained(staging)
        say(f"language model: loading as {_describe(quantization, compute_dtype)}")
        reloaded = auto_class.from_pretrained(
            staging, dtype=compute_dtype, device_map="cpu", quantization_config=settings
        )
        say(f"language model: writing {out_dir}")
        reloaded.save_pretrained(out_dir)
    return reloaded


def _describe(quantization: str, compute_dtype: torch.dtype) -> str:
    kinds = {"none": "unquantized", "8bit": "LLM.int8", "4bit": "NF4 (double quant)"}
    return f"{kinds[quantization]}, compute {dtype_name(compute_dtype)}"


def _new_directory(out_dir: Path) -> Path:
    """Create `out_dir`, refusing a non-empty one (stale shards would mix with new ones)."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InvalidArgumentError(
            expected("language model directory", "new or empty", str(out_dir))
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir.absolute()


def llm_spec(
    model: PreTrainedModel, quantization: str, compute_dtype: torch.dtype, weight_bytes: int
) -> LlmSpec:
    """The manifest facts of a saved language model (projector_bytes is the caller's)."""
    config = model.config
    choice = (quantization, compute_dtype)
    return _spec(type(model).__name__, config, config.num_hidden_layers, choice, weight_bytes)


def _spec(
    architecture: str,
    config: Any,
    num_layers: int,
    choice: tuple[str, torch.dtype],
    weight_bytes: int,
) -> LlmSpec:
    """An `LlmSpec` of a text config; `num_layers` are the layers that hold a KV cache."""
    heads = config.num_attention_heads
    return LlmSpec(
        architecture=architecture,
        num_layers=int(num_layers),
        num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        vocab_size=config.vocab_size,
        max_position_embeddings=config.max_position_embeddings,
        compute_dtype=dtype_name(choice[1]),
        quantization=choice[0],
        weight_bytes=int(weight_bytes),
        projector_bytes=0,
        decoder_layers=int(config.num_hidden_layers),
    )


# --- the Qwen-VL families: the text model and lm_head, saved apart ---------------------------


def save_native_language_model(
    vlm: PreTrainedModel,
    out_dir: Path,
    quantization: str,
    compute_dtype: torch.dtype,
    progress: Progress | None = None,
) -> LlmSpec:
    """Write a Qwen-VL model's text model and lm_head into the new or empty `out_dir`.

    The text model is staged, reloaded with bitsandbytes (the decoder's Linear layers except
    Qwen3.5's `LINEAR_ATTENTION_GATES`; it holds no lm_head) and saved as `save_language_model`
    does; lm_head is written unquantized in the compute dtype to `lm_head.safetensors`, or not at
    all when it is the embedding matrix (the saved config's `tie_word_embeddings` says which).
    The VLM's generation config goes beside. `vlm` is not changed. The spec's `architecture` is
    the VLM class the runtime rebuilds, its `num_layers` the layers with a KV cache (Qwen3.5's
    linear-attention layers keep a fixed-size state instead, as the config planner counts them).
    """
    check_choice(quantization, compute_dtype)
    text_model, head = native_text_model(vlm)
    out_dir = _new_directory(Path(out_dir))
    # A skip list, never None (None lets transformers pick "last modules" to keep itself).
    settings = bitsandbytes_config(quantization, compute_dtype, list(LINEAR_ATTENTION_GATES))
    choice = (quantization, compute_dtype)
    saved = _save_through_bitsandbytes(text_model, AutoModel, out_dir, settings, choice, progress)
    if head is not None:
        weight = head.weight.detach().to(compute_dtype).contiguous()
        save_file({"weight": weight}, str(out_dir / LM_HEAD_FILE))
    copy.deepcopy(vlm.generation_config).save_pretrained(out_dir)
    weight_bytes = sum(p.stat().st_size for p in weight_files(out_dir))
    kv_layers = len(kv_layer_indices(saved.config))
    spec = _spec(type(vlm).__name__, saved.config, kv_layers, choice, weight_bytes)
    return replace(spec, linear_state_bytes=native_linear_state(saved.config, compute_dtype))


def native_linear_state(text_config: Any, compute_dtype: torch.dtype) -> int:
    """Bytes of one sequence's linear-attention state (0 unless the decoder is hybrid)."""
    from edge_hired.facts.config_inputs import linear_state_bytes

    kinds = list(getattr(text_config, "layer_types", None) or [])
    return linear_state_bytes(text_config, kinds, dtype_name(compute_dtype))


def native_text_model(
    vlm: PreTrainedModel,
) -> tuple[PreTrainedModel, torch.nn.Module | None]:
    """The VLM's text model as a model of its own (the same tensors), and lm_head unless tied.

    Built on the meta device from a copy of the text config whose `tie_word_embeddings` records
    whether lm_head *is* the embedding matrix (then None is returned for it).
    """
    if getattr(vlm.config, "model_type", None) not in NATIVE_FAMILIES:
        want = " or ".join(NATIVE_FAMILIES)
        raise ModelLoadError(expected("model", f"a {want} model", type(vlm).__name__))
    decoder, head = vlm.model.language_model, vlm.get_output_embeddings()
    tied = head.weight is decoder.get_input_embeddings().weight
    config = copy.deepcopy(vlm.config.text_config)
    config.tie_word_embeddings = tied
    with torch.device("meta"):
        text_model = AutoModel.from_config(config, dtype=head.weight.dtype)
    _load_exactly(text_model, decoder, "language model")
    _check_materialised(text_model)
    return text_model.eval(), None if tied else head
