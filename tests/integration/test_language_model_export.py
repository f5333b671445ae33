"""The bundle's language model: extraction parity, save/load round trips, sizes, backend check.

Sizes are checked against the storage formats, read from the safetensors headers:
- none: n weights * 2 bytes (fp16) or * 4 bytes (fp32).
- 8bit (LLM.int8): weight int8 [out, in] = n bytes, plus SCB fp32 [out] and a 1-byte
  `weight_format` per Linear.
- 4bit (NF4, double quant): weight uint8 of n/2 elements (two weights per byte), plus per
  Linear: absmax uint8 [n/64], nested_absmax fp32 [ceil(n/64/256)], nested_quant_map fp32 [256],
  quant_map fp32 [16] and the quant_state JSON blob (uint8, its length read from the header).
- A file is 8 bytes of header length + the JSON header + the tensor bytes.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
)

from edge_hired.device.bitsandbytes_check import (
    BackendUnavailableError,
    clear_cache,
    require_bitsandbytes,
    smoke_test,
)
from edge_hired.errors import EdgeHiredError, InvalidArgumentError, ModelLoadError
from edge_hired.export.language_model import extract_causal_lm, save_language_model
from edge_hired.runtime.language_model import load_language_model, weight_files

pytestmark = pytest.mark.integration

ELEMENT_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "U8": 1, "I8": 1}
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SETTINGS = {  # name -> (quantization, compute dtype)
    "none-fp32": ("none", torch.float32),
    "none-fp16": ("none", torch.float16),
    "8bit": ("8bit", torch.float16),
    "4bit": ("4bit", torch.float16),
}
NEW_TOKENS = 6


# --- helpers ---------------------------------------------------------------------------------


def header_tensors(directory: Path) -> dict[str, tuple[str, list[int], int]]:
    """name -> (dtype, shape, bytes) of every tensor in the directory's safetensors files."""
    tensors = {}
    for path in weight_files(directory):
        with safe_open(str(path), "pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
                piece = handle.get_slice(name)
                shape = list(piece.get_shape())
                tensors[name] = (
                    piece.get_dtype(),
                    shape,
                    math.prod(shape) * ELEMENT_BYTES[piece.get_dtype()],
                )
    return tensors


def file_layout_bytes(path: Path) -> int:
    """8 + header length + data bytes, from the file's own header."""
    with path.open("rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_len))
    data = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    return 8 + header_len + data


def is_quantized_linear(name: str) -> bool:
    return name.endswith(".weight") and name.rsplit(".", 2)[-2] in LINEARS


def expected_quantized_bytes(quantization: str, n: int, out_features: int, blob: int) -> int:
    """Bytes of one quantized Linear with n weights (formulas in the module docstring)."""
    if quantization == "8bit":
        return n + 4 * out_features + 1
    return n // 2 + n // 64 + 4 * math.ceil(n / 64 / 256) + 4 * 256 + 4 * 16 + blob


def greedy(model, embeds: torch.Tensor) -> torch.Tensor:
    mask = torch.ones(embeds.shape[:2], dtype=torch.long)
    with torch.inference_mode():
        return model.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
        )


def save_all(causal_lm, root: Path, names) -> dict[str, tuple[Path, object]]:
    saved = {}
    for name in names:
        quantization, dtype = SETTINGS[name]
        saved[name] = (
            root / name,
            save_language_model(causal_lm, root / name, quantization, dtype),
        )
    return saved


# --- fixtures --------------------------------------------------------------------------------


FAMILIES = {"llava-next": LlavaNextForConditionalGeneration, "llava": LlavaForConditionalGeneration}


@pytest.fixture(scope="module")
def vlms(tiny_next_dir: Path, tiny_llava_dir: Path):
    dirs = {"llava-next": tiny_next_dir, "llava": tiny_llava_dir}
    return {k: FAMILIES[k].from_pretrained(dirs[k]).eval() for k in FAMILIES}


@pytest.fixture(scope="module")
def tiny_saved(vlms, tmp_path_factory: pytest.TempPathFactory):
    causal_lm = extract_causal_lm(vlms["llava-next"])
    return save_all(causal_lm, tmp_path_factory.mktemp("tiny-llm"), SETTINGS)


MID = {
    "hidden_size": 512,
    "num_hidden_layers": 4,
    "intermediate_size": 1408,
    "vocab_size": 8000,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
}


@pytest.fixture(scope="module")
def mid_saved(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**MID, max_position_embeddings=2048)).eval()
    return save_all(model, tmp_path_factory.mktemp("mid-llm"), ("none-fp16", "8bit", "4bit"))


# --- extraction ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_extracted_lm_matches_the_vlm(vlms, family: str) -> None:
    vlm = vlms[family]
    causal_lm = extract_causal_lm(vlm)
    assert type(causal_lm).__name__ == "LlamaForCausalLM"
    embeds = torch.randn(
        1, 9, vlm.config.text_config.hidden_size, generator=torch.Generator().manual_seed(1)
    )
    with torch.inference_mode():
        ours, theirs = causal_lm(inputs_embeds=embeds).logits, vlm(inputs_embeds=embeds).logits
    assert (ours - theirs).abs().max().item() <= 1e-6
    assert torch.equal(greedy(causal_lm, embeds), greedy(vlm, embeds))


def test_tied_embeddings_stay_tied(tiny_llava_dir: Path) -> None:
    config = LlavaForConditionalGeneration.config_class.from_pretrained(tiny_llava_dir)
    config.tie_word_embeddings = config.text_config.tie_word_embeddings = True
    vlm = LlavaForConditionalGeneration(config).eval()
    causal_lm = extract_causal_lm(vlm)
    assert causal_lm.lm_head.weight is causal_lm.model.embed_tokens.weight
    assert causal_lm.lm_head.weight.data_ptr() == vlm.lm_head.weight.data_ptr()


# --- save / load -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SETTINGS)
def test_saved_model_loads_and_generates(tiny_saved, name: str) -> None:
    directory, spec = tiny_saved[name]
    quantization, dtype = SETTINGS[name]
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
    ]
    assert (spec.quantization, spec.compute_dtype) == (quantization, str(dtype).split(".")[-1])
    assert spec.weight_bytes == sum(p.stat().st_size for p in directory.glob("*.safetensors"))
    assert spec.projector_bytes == 0 and spec.num_layers == 2 and spec.head_dim == 16
    model = load_language_model(directory, torch.device("cpu"))
    kinds = {type(m).__name__ for n, m in model.named_modules() if n.endswith(LINEARS)}
    assert kinds == {{"none": "Linear", "8bit": "Linear8bitLt", "4bit": "Linear4bit"}[quantization]}
    assert type(model.lm_head) is torch.nn.Linear
    embeds = torch.randn(1, 5, spec.hidden_size).to(model.dtype)
    assert greedy(model, embeds).shape == (1, NEW_TOKENS)


def test_files_are_exactly_their_headers_and_tensors(tiny_saved) -> None:
    for directory, _spec in tiny_saved.values():
        for path in weight_files(directory):
            assert path.stat().st_size == file_layout_bytes(path)


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_quantized_linears_shrink_as_the_format_says(tiny_saved, quantization: str) -> None:
    fp16, fp32 = (
        header_tensors(tiny_saved["none-fp16"][0]),
        header_tensors(tiny_saved["none-fp32"][0]),
    )
    quant = header_tensors(tiny_saved[quantization][0])
    linears = [k for k in fp16 if is_quantized_linear(k)]
    assert len(linears) == 2 * len(LINEARS)
    for key in linears:
        dtype, shape, nbytes = quant[key]
        n = math.prod(fp16[key][1])
        if quantization == "4bit":
            assert (dtype, math.prod(shape)) == ("U8", n // 2)
            assert nbytes * 4 == fp16[key][2] and nbytes * 8 == fp32[key][2]
        else:
            assert (dtype, shape) == ("I8", fp16[key][1]) and nbytes * 2 == fp16[key][2]
        module = key.removesuffix("weight")  # 8bit keeps SCB beside the weight, not under it
        extras = sum(v[2] for k, v in quant.items() if k.startswith(module))
        blob = next((v[2] for k, v in quant.items() if k.startswith(key + ".quant_state.")), 0)
        assert extras == expected_quantized_bytes(quantization, n, fp16[key][1][0], blob)
    untouched = [k for k in fp16 if k not in linears]
    assert all(quant[k] == fp16[k] for k in untouched)  # embeddings, norms, lm_head stay fp16
    assert set(quant) >= set(fp16)


def test_mid_model_file_sizes_follow_the_theory(mid_saved) -> None:
    """Whole-file bytes vs theory, for L layers, hidden h, intermediate i, vocab V:
    Q = L(4h^2 + 3hi) quantized weights in 7L Linears, R = L(5h + 2i) their output rows,
    U = 2Vh + (2L + 1)h unquantized weights (embed, lm_head, norms);
    none fp16 = 2(Q + U); 8bit = Q + 4R + 7L + 2U;
    4bit = Q/2 + Q/64 + sum(4 ceil(n/16384)) + 7L(1024 + 64 + ~170 JSON) + 2U.
    Headers add a few kB, so each file is within 0.5% of its theory.
    """
    h, i, layers, vocab = (
        MID["hidden_size"],
        MID["intermediate_size"],
        MID["num_hidden_layers"],
        MID["vocab_size"],
    )
    q = layers * (4 * h * h + 3 * h * i)
    rows = layers * (5 * h + 2 * i)
    unquantized = 2 * vocab * h + (2 * layers + 1) * h
    nested = 4 * layers * sum(math.ceil(n / 16384) for n in [h * h] * 4 + [h * i] * 3)
    theory = {
        "none-fp16": 2 * (q + unquantized),
        "8bit": q + 4 * rows + 7 * layers + 2 * unquantized,
        "4bit": q // 2 + q // 64 + nested + 7 * layers * (1024 + 64 + 170) + 2 * unquantized,
    }
    for name, (_directory, spec) in mid_saved.items():
        assert abs(spec.weight_bytes / theory[name] - 1) < 0.005, (
            name,
            spec.weight_bytes,
            theory[name],
        )
    assert mid_saved["4bit"][1].weight_bytes < mid_saved["8bit"][1].weight_bytes


def test_save_refuses_bad_choices(vlms, tmp_path: Path) -> None:
    causal_lm = extract_causal_lm(vlms["llava"])
    with pytest.raises(InvalidArgumentError, match="fp16"):
        save_language_model(causal_lm, tmp_path / "a", "8bit", torch.float32)
    with pytest.raises(InvalidArgumentError, match="quantization"):
        save_language_model(causal_lm, tmp_path / "b", "3bit", torch.float16)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "stale.safetensors").write_bytes(b"x")
    with pytest.raises(InvalidArgumentError, match="new or empty"):
        save_language_model(causal_lm, tmp_path / "c", "none", torch.float16)


def test_load_casts_unquantized_and_keeps_quantized_dtypes(tiny_saved) -> None:
    cpu = torch.device("cpu")
    upcast = load_language_model(tiny_saved["none-fp16"][0], cpu, torch.float32)
    assert upcast.get_input_embeddings().weight.dtype == torch.float32
    with pytest.raises(InvalidArgumentError, match="as exported"):
        load_language_model(tiny_saved["4bit"][0], cpu, torch.float32)


def test_load_refuses_pickled_weights(tiny_saved, tmp_path: Path) -> None:
    source = tiny_saved["none-fp16"][0]
    for path in source.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelLoadError, match="safetensors only"):
        load_language_model(tmp_path, torch.device("cpu"))


# --- bitsandbytes backend check ---------------------------------------------------------------


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_bitsandbytes_works_on_this_cpu(quantization: str) -> None:
    require_bitsandbytes(quantization, torch.device("cpu"))


def broken_import():
    raise ImportError("libbitsandbytes_cuda126.so: cannot open shared object file")


def broken_kernel(_bnb, _quantization, _device):
    raise RuntimeError(
        "CUDA Setup failed despite GPU being available.\n"
        "Error named symbol not found at line 83 in file ops.cu"
    )


@pytest.mark.parametrize(
    ("injected", "failure"),
    [
        ({"importer": broken_import}, "cannot open shared object file"),
        ({"smoke": broken_kernel}, "named symbol not found"),
    ],
)
def test_broken_backend_raises_one_line_with_the_fix(injected: dict, failure: str) -> None:
    with pytest.raises(BackendUnavailableError) as caught:
        require_bitsandbytes("4bit", "cuda", jetson=True, **injected)
    message = str(caught.value)
    assert "\n" not in message and failure in message
    assert "Jetson" in message and "--quant none" in message
    assert isinstance(caught.value, EdgeHiredError) and caught.value.__cause__ is not None


def test_verdict_is_cached_per_quantization_and_device() -> None:
    calls = []

    def counting(bnb, quantization, device):
        calls.append((quantization, str(device)))

    clear_cache()
    for _ in range(2):
        require_bitsandbytes("8bit", "cpu", smoke=counting)
        require_bitsandbytes("4bit", "cpu", smoke=counting)
    assert calls == [("8bit", "cpu"), ("4bit", "cpu")]


def test_smoke_test_catches_wrong_results() -> None:
    def zeros_parameter(weight, **_kwargs):
        return torch.nn.Parameter(torch.zeros_like(weight), requires_grad=False)

    def plain_linear(inputs, outputs, **_kwargs):
        return torch.nn.Linear(inputs, outputs, bias=False)

    fake = SimpleNamespace(nn=SimpleNamespace(Linear4bit=plain_linear, Params4bit=zeros_parameter))
    with pytest.raises(RuntimeError, match="relative error"):
        smoke_test(fake, "4bit", torch.device("cpu"))
