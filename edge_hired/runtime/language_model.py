"""Load a bundle's saved language model on the device: quantized (bitsandbytes) or not.

The runtime's half of `edge_hired.export.language_model`: it reads only what the exporter wrote
(config.json's quantization and dtype, safetensors weights) and never needs onnx or the exporter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, PreTrainedModel

from edge_hired.device.bitsandbytes_check import require_bitsandbytes
from edge_hired.device.torch_device import placement
from edge_hired.errors import InvalidArgumentError, ModelLoadError, expected
from edge_hired.units import check_quantization

#: Compute dtypes each quantization accepts (see the module docstring for 8bit).
ALLOWED_DTYPES: dict[str, tuple[torch.dtype, ...]] = {
    "none": (torch.float32, torch.float16, torch.bfloat16),
    "4bit": (torch.float16, torch.float32, torch.bfloat16),
    "8bit": (torch.float16,),
}

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
#: NF4 with double quantization (~0.3 GB less on a 7B model); LLM.int8's outlier threshold.
NF4_DOUBLE_QUANT = True
INT8_THRESHOLD = 6.0


def check_choice(quantization: str, compute_dtype: torch.dtype) -> None:
    """Refuse an unknown quantization or a compute dtype it cannot use well."""
    check_quantization(quantization)
    allowed = ALLOWED_DTYPES[quantization]
    if compute_dtype not in allowed:
        names = ", ".join(dtype_name(d) for d in allowed)
        raise InvalidArgumentError(
            expected(f"compute dtype for {quantization}", names, dtype_name(compute_dtype))
            + (
                " (LLM.int8 computes in fp16 and warns on every fp32 matmul; use --dtype fp16)"
                if quantization == "8bit"
                else ""
            )
        )


def bitsandbytes_config(
    quantization: str, compute_dtype: torch.dtype, skip_modules: list[str]
) -> BitsAndBytesConfig | None:
    """The transformers quantization config of our 4bit / 8bit choice; None for "none"."""
    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=NF4_DOUBLE_QUANT,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=skip_modules,
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_threshold=INT8_THRESHOLD, llm_int8_skip_modules=skip_modules
        )
    return None


def weight_files(directory: Path) -> list[Path]:
    """The `.safetensors` files of a saved model; refuses pickle files and weightless dirs."""
    directory = Path(directory)
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(expected(f"{directory}: weight files", "safetensors only", pickles))
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(expected(f"{directory}: weight files", "*.safetensors", "none"))
    return files


def dtype_name(dtype: torch.dtype) -> str:
    """'float16' for torch.float16."""
    return str(dtype).removeprefix("torch.")


def _saved_config(directory: Path) -> dict[str, Any]:
    """config.json of a saved language model, as plain data."""
    path = Path(directory) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path}: unreadable language model config ({error})") from error


def saved_quantization(directory: Path) -> str:
    """ "none", "8bit" or "4bit", read from the saved config.json (never guessed from names)."""
    settings: dict[str, Any] | None = _saved_config(directory).get("quantization_config")
    if not settings:
        return "none"
    if settings.get("quant_method") != "bitsandbytes":
        where = f"{Path(directory) / 'config.json'}: quant_method"
        raise ModelLoadError(expected(where, "bitsandbytes", settings.get("quant_method")))
    if settings.get("load_in_4bit"):
        return "4bit"
    return "8bit" if settings.get("load_in_8bit") else "none"


def saved_dtype(directory: Path) -> torch.dtype:
    """The dtype the unquantized tensors were saved in (config.json's `dtype`)."""
    name = _saved_config(directory).get("dtype") or "float32"
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ModelLoadError(expected(f"{directory}: saved dtype", "a torch dtype name", name))
    return dtype


def _load_dtype(directory: Path, quantization: str, dtype: torch.dtype | None) -> torch.dtype:
    """The requested dtype, or the saved one; quantized models only load in their saved dtype."""
    saved = saved_dtype(directory)
    dtype = dtype or saved
    if quantization != "none" and dtype != saved:
        # transformers keeps a pre-quantized checkpoint's dtype whatever `dtype=` says
        raise InvalidArgumentError(
            expected(
                f"{directory}: dtype of a {quantization} model",
                f"{dtype_name(saved)} (as exported)",
                dtype_name(dtype),
            )
        )
    check_choice(quantization, dtype)
    return dtype


def load_language_model(
    directory: Path,
    device: torch.device,
    dtype: torch.dtype | None = None,
    auto_class: type = AutoModelForCausalLM,
) -> PreTrainedModel:
    """Load a saved language model (quantized or not) onto `device`, in eval mode.

    `dtype` is the dtype of the unquantized tensors and activations; None keeps the saved one
    (the manifest's compute dtype). An unquantized model can be cast to any dtype; a quantized
    one only loads in the dtype it was exported with. Quantized models are placed with
    `device_map`, as bitsandbytes requires, after `require_bitsandbytes` passed. `auto_class`
    is `AutoModel` for a Qwen-VL bundle's text model (saved without its lm_head).
    """
    directory = Path(directory)
    quantization = saved_quantization(directory)
    weight_files(directory)
    dtype = _load_dtype(directory, quantization, dtype)
    require_bitsandbytes(quantization, device)
    model = auto_class.from_pretrained(directory, dtype=dtype, device_map={"": placement(device)})
    loaded = model.get_input_embeddings().weight.dtype
    if loaded != dtype:
        raise ModelLoadError(expected(f"{directory}: loaded dtype", dtype_name(dtype), loaded))
    return model.eval()


def parameter_bytes(module: torch.nn.Module) -> int:
    """Bytes of a loaded module's parameters, as they sit in memory (tied weights once)."""
    return sum(p.numel() * p.element_size() for p in module.parameters())


def stored_elements(files: list[Path], prefix: str = "") -> int:
    """Elements of the tensors (named with `prefix`) in safetensors files, read from the headers.

    Times a dtype's size this is what loading them unquantized in that dtype holds: the plan
    counts it before the weights are read.
    """
    from safetensors import safe_open

    total = 0
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not iterable
                if name.startswith(prefix):
                    total += math.prod(handle.get_slice(name).get_shape())
    return total
