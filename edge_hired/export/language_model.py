"""The bundle's language model: cut out of the LLaVA model, quantized offline, loaded on the device.

`extract_causal_lm` turns the VLM's decoder + lm_head into a standalone causal LM of the text
config's architecture (e.g. LlamaForCausalLM) holding the very same tensors. `save_language_model`
writes it with `save_pretrained` (safetensors only) either unquantized or quantized by bitsandbytes
through transformers' `BitsAndBytesConfig`; `edge_hired.runtime.language_model` loads it back.

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
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from edge_hired.bundle.manifest import LlmSpec
from edge_hired.device.bitsandbytes_check import require_bitsandbytes
from edge_hired.errors import InvalidArgumentError, ModelLoadError, expected
from edge_hired.runtime.language_model import (
    bitsandbytes_config,
    check_choice,
    dtype_name,
    weight_files,
)

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
    say = progress or (lambda _line: None)
    require_bitsandbytes(quantization, torch.device("cpu"))
    settings = bitsandbytes_config(quantization, compute_dtype, modules_to_keep(causal_lm))
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}-", dir=out_dir.parent) as staging:
        say(f"language model: staging unquantized weights in {staging}")
        causal_lm.save_pretrained(staging)
        say(f"language model: loading as {_describe(quantization, compute_dtype)}")
        model = AutoModelForCausalLM.from_pretrained(
            staging, dtype=compute_dtype, device_map="cpu", quantization_config=settings
        )
        say(f"language model: writing {out_dir}")
        model.save_pretrained(out_dir)
    weight_bytes = sum(p.stat().st_size for p in weight_files(out_dir))
    return llm_spec(model, quantization, compute_dtype, weight_bytes)


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
    heads = config.num_attention_heads
    return LlmSpec(
        architecture=type(model).__name__,
        num_layers=config.num_hidden_layers,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        vocab_size=config.vocab_size,
        max_position_embeddings=config.max_position_embeddings,
        compute_dtype=dtype_name(compute_dtype),
        quantization=quantization,
        weight_bytes=int(weight_bytes),
        projector_bytes=0,
    )
