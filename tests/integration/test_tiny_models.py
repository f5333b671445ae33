"""Integration tests of `edge_hired.models.tiny`: random-weight checkpoints are built with the real
transformers classes, load back through the hub code path, count image tokens like llava-v1.6 /
llava-1.5, generate, and are written deterministically and atomically."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import (
    AutoProcessor,
    CLIPImageProcessorPil,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaProcessor,
)

from edge_hired.data import sample_image_path
from edge_hired.errors import InvalidArgumentError, ModelLoadError
from edge_hired.models import tiny
from edge_hired.models.tiny import PRESETS, build_checkpoint, config_kwargs, default_checkpoint

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "processor_config.json",
}
ONE_IMAGE_QUESTION = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}
]


@pytest.fixture(scope="module")
def next_processor(tiny_next_dir: Path) -> LlavaNextProcessor:
    return AutoProcessor.from_pretrained(tiny_next_dir)


@pytest.fixture(scope="module")
def llava_processor(tiny_llava_dir: Path) -> LlavaProcessor:
    return AutoProcessor.from_pretrained(tiny_llava_dir)


def _image_tokens(processor: object, size: tuple[int, int]) -> int:
    """How many <image> placeholders the processor inserts for a (width, height) image."""
    prompt = processor.apply_chat_template(ONE_IMAGE_QUESTION, add_generation_prompt=True)
    image = Image.new("RGB", size, (90, 40, 200))
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    return int((inputs["input_ids"] == processor.image_token_id).sum())


def _generate(model: torch.nn.Module, processor: object, image: Image.Image) -> torch.Tensor:
    """The ids stock greedy `generate` appends to the chat prompt (5 at most)."""
    prompt = processor.apply_chat_template(ONE_IMAGE_QUESTION, add_generation_prompt=True)
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    return output[0, inputs["input_ids"].shape[1] :]


# ---------------------------------------------------------------- layout and loading


def test_checkpoint_layout_and_no_leftovers(tiny_next_dir: Path) -> None:
    assert {path.name for path in tiny_next_dir.iterdir()} >= CHECKPOINT_FILES
    assert [path.name for path in tiny_next_dir.parent.iterdir()] == [tiny_next_dir.name]


def test_llava_next_loads_back_through_hub_path(
    tiny_next_dir: Path, next_processor: object
) -> None:
    assert isinstance(next_processor, LlavaNextProcessor)
    assert isinstance(next_processor.image_processor, LlavaNextImageProcessorPil)
    assert next_processor.num_additional_image_tokens == 1
    pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    assert next_processor.image_processor.image_grid_pinpoints == pinpoints
    model = LlavaNextForConditionalGeneration.from_pretrained(tiny_next_dir)
    config = model.config
    assert config.image_token_id == next_processor.image_token_id
    assert config.text_config.vocab_size == len(next_processor.tokenizer)
    assert (config.vision_feature_layer, config.vision_feature_select_strategy) == (-2, "default")
    assert model.model.image_newline.shape == (64,)


def test_llava_loads_back_through_hub_path(tiny_llava_dir: Path, llava_processor: object) -> None:
    assert isinstance(llava_processor, LlavaProcessor)
    assert isinstance(llava_processor.image_processor, CLIPImageProcessorPil)
    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir)
    assert model.config.image_token_id == llava_processor.image_token_id


def test_tiny_shapes_match_the_brief() -> None:
    config = LlavaNextConfig(**config_kwargs("tiny-llava-next"))
    vision, text = config.vision_config, config.text_config
    assert (vision.image_size, vision.patch_size, vision.hidden_size) == (336, 14, 32)
    assert (vision.num_attention_heads, vision.num_hidden_layers) == (4, 4)
    assert vision.intermediate_size == 64
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (64, 2, 128)
    assert (text.num_attention_heads, text.num_key_value_heads) == (4, 2)
    assert text.max_position_embeddings == 4096
    assert 256 < text.vocab_size <= 1100


# ---------------------------------------------------------------- image tokens and generation


@pytest.mark.parametrize(("size", "tokens"), [((672, 672), 2928), ((336, 336), 1176)])
def test_llava_next_image_token_count(next_processor: object, size: tuple, tokens: int) -> None:
    assert _image_tokens(next_processor, size) == tokens


@pytest.mark.parametrize("size", [(672, 672), (336, 336), (800, 560)])
def test_llava_image_token_count(llava_processor: object, size: tuple) -> None:
    assert _image_tokens(llava_processor, size) == 576


def test_llava_next_generates_five_tokens(tiny_next_dir: Path, next_processor: object) -> None:
    model = LlavaNextForConditionalGeneration.from_pretrained(tiny_next_dir)
    new = _generate(model, next_processor, Image.open(sample_image_path()).convert("RGB"))
    assert new.shape == (5,)
    assert isinstance(next_processor.decode(new, skip_special_tokens=True), str)


def test_llava_generates_five_tokens(tiny_llava_dir: Path, llava_processor: object) -> None:
    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir)
    new = _generate(model, llava_processor, Image.new("RGB", (500, 300), (10, 200, 30)))
    assert new.shape == (5,)


# ---------------------------------------------------------------- tokenizer and chat template


def test_chat_template_is_vicuna_style(next_processor: object) -> None:
    render = next_processor.apply_chat_template
    assert render(ONE_IMAGE_QUESTION, add_generation_prompt=True) == (
        "USER: <image>\nWhat is this? ASSISTANT:"
    )
    assert render(ONE_IMAGE_QUESTION) == "USER: <image>\nWhat is this? "
    conversation = [
        *ONE_IMAGE_QUESTION,
        {"role": "assistant", "content": [{"type": "text", "text": "A house."}]},
        {"role": "user", "content": [{"type": "text", "text": "Which colour?"}]},
    ]
    assert render(conversation, add_generation_prompt=True) == (
        "USER: <image>\nWhat is this? ASSISTANT: A house.</s>USER: Which colour? ASSISTANT:"
    )
    tokenizer_render = next_processor.tokenizer.apply_chat_template(
        ONE_IMAGE_QUESTION, tokenize=False, add_generation_prompt=True
    )
    assert tokenizer_render == "USER: <image>\nWhat is this? ASSISTANT:"


def test_tokenizer_special_tokens_and_byte_level_round_trip(next_processor: object) -> None:
    tokenizer = next_processor.tokenizer
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<s>", "</s>")
    assert (tokenizer.unk_token, tokenizer.pad_token) == ("<unk>", "<pad>")
    assert tokenizer.convert_tokens_to_ids("<image>") == next_processor.image_token_id
    text = "Describe the picture: café, 35 °C, 日本 ✓"
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    every_id = list(range(len(tokenizer)))
    assert isinstance(tokenizer.decode(every_id), str)


# ---------------------------------------------------------------- determinism and atomicity


def test_same_seed_gives_byte_identical_weights(tmp_path: Path, tiny_llava_dir: Path) -> None:
    again = build_checkpoint("tiny-llava", tmp_path / "again", seed=0)
    other = build_checkpoint("tiny-llava", tmp_path / "other", seed=1)
    weights = (tiny_llava_dir / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == weights
    assert (other / "model.safetensors").read_bytes() != weights
    assert (again / "tokenizer.json").read_bytes() == (
        tiny_llava_dir / "tokenizer.json"
    ).read_bytes()


def test_failing_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(self: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    # The weights are already written when the processor save fails: a half-built checkpoint.
    monkeypatch.setattr(LlavaNextProcessor, "save_pretrained", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        build_checkpoint("tiny-llava-next", tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_non_empty_target(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match="out_dir"):
        build_checkpoint("tiny-llava", target)
    assert [path.name for path in tmp_path.iterdir()] == ["ckpt"]


def test_unknown_preset_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        build_checkpoint("huge-llava", tmp_path / "ckpt")
    for name in PRESETS:
        assert name in str(info.value)
    assert not (tmp_path / "ckpt").exists()


# ---------------------------------------------------------------- the cached default checkpoint


def test_default_checkpoint_builds_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_HIRED_CACHE", str(tmp_path))
    path = default_checkpoint("tiny-llava")
    assert path == tmp_path / "models" / "tiny-llava-v1"
    assert {child.name for child in path.iterdir()} >= CHECKPOINT_FILES

    def no_rebuild(*args: object) -> None:
        raise AssertionError("rebuilt a cached checkpoint")

    monkeypatch.setattr(tiny, "_write_checkpoint", no_rebuild)
    assert default_checkpoint("tiny-llava") == path


def test_default_checkpoint_uses_a_winner_that_appeared_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_HIRED_CACHE", str(tmp_path))
    target = tmp_path / "models" / "tiny-llava-v1"
    real_write = tiny._write_checkpoint

    def other_process_wins(preset: str, directory: Path, seed: int) -> None:
        real_write(preset, directory, seed)
        target.mkdir()
        (target / "config.json").write_text("{}")  # the winner's checkpoint

    monkeypatch.setattr(tiny, "_write_checkpoint", other_process_wins)
    assert default_checkpoint("tiny-llava") == target
    assert [path.name for path in target.parent.iterdir()] == ["tiny-llava-v1"]
    assert [path.name for path in target.iterdir()] == ["config.json"]


def test_default_checkpoint_survives_a_real_race(tmp_path: Path) -> None:
    code = (
        "from edge_hired.models.tiny import default_checkpoint\n"
        "print(default_checkpoint('tiny-llava'))"
    )
    env = {"EDGE_HIRED_CACHE": str(tmp_path), "PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    racers = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=120)[0].strip() for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0]
    target = tmp_path / "models" / "tiny-llava-v1"
    assert outputs == [str(target)] * 2
    assert [path.name for path in target.parent.iterdir()] == ["tiny-llava-v1"]
    assert LlavaConfig.from_pretrained(target).model_type == "llava"


def test_default_checkpoint_rejects_a_file_in_the_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_HIRED_CACHE", str(tmp_path))
    blocker = tmp_path / "models" / "tiny-llava-v1"
    blocker.parent.mkdir()
    blocker.write_text("not a checkpoint")
    with pytest.raises(ModelLoadError, match="tiny-llava-v1"):
        default_checkpoint("tiny-llava")
    assert [path.name for path in blocker.parent.iterdir()] == ["tiny-llava-v1"]


def test_cache_root_defaults_to_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGE_HIRED_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert tiny.cache_root() == tmp_path / ".cache" / "edge-hired"


# ---------------------------------------------------------------- the big presets (never built)


def test_presets_are_frozen_data() -> None:
    assert set(PRESETS) >= {"tiny-llava-next", "tiny-llava", "vitl-llava-next", "mid-llava-next"}
    for name, preset in PRESETS.items():
        assert preset.name == name
        with pytest.raises(AttributeError):
            preset.name = "other"  # type: ignore[misc]


def test_vitl_preset_config_shapes() -> None:
    config = LlavaNextConfig(**config_kwargs("vitl-llava-next"))
    vision = config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers) == (1024, 24)
    assert vision.num_attention_heads == 16
    assert (vision.intermediate_size, vision.image_size, vision.patch_size) == (4096, 336, 14)
    assert config.text_config.hidden_size == 64


def test_mid_preset_has_about_a_billion_parameters() -> None:
    config = LlavaNextConfig(**config_kwargs("mid-llava-next"))
    text = config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (2048, 16, 5632)
    assert (text.num_attention_heads, text.num_key_value_heads) == (16, 8)
    assert config.vision_config.hidden_size == 1024
    with torch.device("meta"):
        model = LlavaNextForConditionalGeneration(config)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    assert 0.8e9 <= parameters <= 1.5e9
