"""Random-weight LLaVA checkpoints built offline, saved exactly like a hub checkpoint.

Tests, demos and benchmarks need a LLaVA-NeXT / LLaVA-1.5 / LLaVA-OneVision model (CLIP or SigLIP
tower) without network access. This
module builds one from a preset (`edge_hired.models.presets`) with the real transformers classes,
a byte-level BPE tokenizer trained in-process on a short embedded text, and a Vicuna-style chat
template, then writes it with `save_pretrained`. Loading it back goes through the very same
`AutoProcessor.from_pretrained` / `...ForConditionalGeneration.from_pretrained` path as a hub model.
Builds are seeded (byte-identical weights for a seed) and atomic (temporary sibling + rename).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_hired.errors import InvalidArgumentError, ModelLoadError, expected
from edge_hired.models import tiny_qwen
from edge_hired.models.presets import PRESETS, QWEN_FAMILIES, ModelPreset

if TYPE_CHECKING:  # transformers is imported lazily: reading PRESETS must stay cheap
    from tokenizers import Tokenizer
    from transformers import (
        PreTrainedConfig,
        PreTrainedModel,
        PreTrainedTokenizerFast,
    )

__all__ = [
    "CHAT_TEMPLATE",
    "CHECKPOINT_VERSION",
    "PRESETS",
    "ModelPreset",
    "build_checkpoint",
    "build_family_tokenizer",
    "build_processor",
    "build_tokenizer",
    "cache_root",
    "config_kwargs",
    "default_checkpoint",
    "get_preset",
    "make_config",
]

#: Bumped whenever a preset, the tokenizer or the template changes what a build writes.
CHECKPOINT_VERSION = "v1"

# transformers initialises from torch's global RNG: serialise seeded builds within a process.
_INIT_LOCK = threading.Lock()

UNK, BOS, EOS, PAD, IMAGE = "<unk>", "<s>", "</s>", "<pad>", "<image>"
SPECIAL_TOKENS = (UNK, BOS, EOS, PAD, IMAGE)
TOKENIZER_VOCAB_TARGET = 1024

#: Vicuna style as in llava-v1.6-vicuna: "USER: <image>\n{text} ASSISTANT:".
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- if message['content'] is string -%}{{- message['content'] + ' ' -}}"
    "{%- else -%}{%- for item in message['content'] if item['type'] == 'text' -%}"
    "{{- item['text'] + ' ' -}}{%- endfor -%}{%- endif -%}"
    "{%- else -%}"
    "{{- message['role'] | upper + ': ' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for item in message['content'] if item['type'] == 'image' -%}"
    "{{- '<image>\n' -}}{%- endfor -%}"
    "{%- for item in message['content'] if item['type'] == 'text' -%}"
    "{{- item['text'] -}}{%- endfor -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{{- '</s>' -}}{%- else -%}{{- ' ' -}}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
)

_CORPUS = """\
A photograph shows a small red house next to a tall green tree. The sky above the house is blue
and there are two white clouds. In front of the house a brown dog sits on the grass and looks at
the camera. A yellow car is parked on the road, and a woman in a black coat walks past it.
Describe the image in detail. What is in this picture? How many people can you see? What colour
is the car? Where is the dog? Is it day or night? What is written on the sign?
The picture contains a red circle, a blue square, a green triangle and a yellow star on a light
grey background. There is some text at the top of the image and a line of numbers at the bottom.
The circle is on the left, the square is in the middle and the triangle is on the right.
This is a chart with bars of different heights. The first bar is the highest and the last one is
the lowest. The title of the chart says that sales grew every year from one thousand to nine
thousand units. The axis labels are small and hard to read.
A cat is sleeping on a wooden table in a kitchen. Next to the cat there is a cup of coffee, a
plate with bread and an open book. Light comes in through a window on the left side of the room.
The street is busy: cars, bikes and buses move in both directions, and many people wait at the
crossing. A traffic light shows red. On the corner there is a shop with a large sign and a clock.
The model reads the image as a grid of patches. Each patch becomes a token, and the language model
answers the question about the picture one word at a time. High resolution images are split into
several parts, so the number of visual tokens grows quickly. Dropping the tokens that matter least
keeps the answer good while the device uses less memory and less time.
Small computers at the edge have little memory. A good model for such a device must be fast,
accurate and simple to use. The user gives an image and a question, and the assistant gives a
short and helpful answer. Yes, no, maybe, one, two, three, four, five, six, seven, eight, nine, ten.
There is a mountain behind a lake, and the water reflects the snow on the top of the mountain. A
boat with an orange sail crosses the lake. Birds fly over the trees near the shore.
USER: What is shown in the image? ASSISTANT: The image shows a red house and a green tree.
USER: How many shapes are there? ASSISTANT: There are four shapes: a circle, a square, a
triangle and a star.
"""


def get_preset(preset: str) -> ModelPreset:
    """Return the preset called `preset`, or raise InvalidArgumentError naming the known ones."""
    try:
        return PRESETS[preset]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise InvalidArgumentError(expected("preset", f"one of {known}", preset)) from None


def _train_bpe(specials: tuple[str, ...] = SPECIAL_TOKENS) -> Tokenizer:
    """Train a byte-level BPE `tokenizers.Tokenizer` on the embedded corpus (deterministic).

    `specials` come first in the vocabulary, in order (the tiled families add their markers).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_TARGET,
        min_frequency=1,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(), trainer)
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    return tokenizer


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the offline fast tokenizer: byte-level BPE with <s>, </s>, <unk>, <pad> and <image>.

    Byte-level means every string encodes and every id decodes to readable text.
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=_train_bpe(),
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE},
        padding_side="left",
        model_max_length=4096,
        chat_template=CHAT_TEMPLATE,
    )


#: InternVL's image markers and Qwen-style turn markers, with the -hf tokenizers' names.
INTERNVL_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
#: SmolVLM's image markers: fake-image wrapper, global image, end of turn, and one
#: `<row_r_col_c>` per tile position of grids up to 6 x 6 (as the SmolVLM2 tokenizers have).
SMOLVLM_TOKENS = {
    "image_token": IMAGE,
    "fake_image_token": "<fake_token_around_image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}
_SMOLVLM_ROWS = tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))
_TURN_TOKENS = ("<|im_start|>", "<|im_end|>")

#: Qwen style, as InternVL3's: the image placeholder is `<IMG_CONTEXT>` on its own line.
INTERNVL_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for item in message['content'] if item['type'] == 'image' -%}"
    "{{- '<IMG_CONTEXT>\n' -}}{%- endfor -%}"
    "{%- for item in message['content'] if item['type'] == 'text' -%}"
    "{{- item['text'] -}}{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)

#: SmolVLM2 style: "<|im_start|>User:<image>{text}<end_of_utterance>\nAssistant:".
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>"
    "{%- for message in messages -%}"
    "{{- message['role'] | capitalize -}}"
    "{%- if message['content'] is string -%}{{- ': ' + message['content'] -}}"
    "{%- else -%}"
    "{%- if message['content'][0]['type'] == 'image' -%}{{- ':' -}}"
    "{%- else -%}{{- ': ' -}}{%- endif -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'text' -%}{{- item['text'] -}}"
    "{%- elif item['type'] == 'image' -%}{{- '<image>' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<end_of_utterance>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant:' -}}{%- endif -%}"
)

TILED_CHAT_TEMPLATES = {"internvl": INTERNVL_CHAT_TEMPLATE, "smolvlm": SMOLVLM_CHAT_TEMPLATE}


def build_family_tokenizer(family: str) -> PreTrainedTokenizerFast:
    """The offline tokenizer plus a tiled family's markers (as single special tokens).

    `family` is "internvl" or "smolvlm"; the markers are reachable by the attribute names the
    stock processors read (`tokenizer.context_image_token`, `tokenizer.global_image_token`, ...).
    Any other family gets `build_tokenizer()`.
    """
    from transformers import PreTrainedTokenizerFast

    if family in QWEN_FAMILIES:
        extra = tuple(t for t in tiny_qwen.special_tokens() if t not in SPECIAL_TOKENS)
        return tiny_qwen.qwen_tokenizer(_train_bpe(SPECIAL_TOKENS + extra), BOS, EOS, UNK, PAD)
    if family not in TILED_CHAT_TEMPLATES:
        return build_tokenizer()
    named = INTERNVL_TOKENS if family == "internvl" else SMOLVLM_TOKENS
    extra = tuple(named.values()) + _TURN_TOKENS + (_SMOLVLM_ROWS if family == "smolvlm" else ())
    specials = SPECIAL_TOKENS + tuple(t for t in extra if t not in SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=_train_bpe(specials),
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        extra_special_tokens=dict(named),
        padding_side="left",
        model_max_length=8192,
        chat_template=TILED_CHAT_TEMPLATES[family],
    )


def _text_kwargs(spec: ModelPreset, tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    """Text config kwargs: the preset's shape plus the tokenizer's vocabulary and special ids."""
    return {
        "model_type": spec.text_type,
        **spec.text,
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def config_kwargs(preset: str, tokenizer: PreTrainedTokenizerFast | None = None) -> dict[str, Any]:
    """Keyword arguments of LlavaNextConfig / LlavaConfig for `preset` (plain JSON-able data).

    Vocabulary size and special-token ids come from `tokenizer` (default: `build_tokenizer()`).
    """
    spec = get_preset(preset)
    tokenizer = tokenizer if tokenizer is not None else build_family_tokenizer(spec.family)
    if spec.family in TILED_CHAT_TEMPLATES:
        return _tiled_config_kwargs(spec, tokenizer)
    if spec.family in QWEN_FAMILIES:
        ids = {
            k: tokenizer.convert_tokens_to_ids(v) for k, v in tiny_qwen.QWEN_VISION_TOKENS.items()
        }
        return tiny_qwen.qwen_config_kwargs(spec, _text_kwargs(spec, tokenizer), ids)
    kwargs: dict[str, Any] = {
        "vision_config": {"model_type": spec.vision_type, **spec.vision},
        "text_config": _text_kwargs(spec, tokenizer),
        "image_token_id": tokenizer.convert_tokens_to_ids(IMAGE),
        "image_seq_length": spec.patches_per_image,
        "vision_feature_layer": spec.vision_feature_layer,
        "vision_feature_select_strategy": spec.vision_feature_select_strategy,
        "pad_token_id": tokenizer.pad_token_id,
        "dtype": spec.dtype,
    }
    if spec.family != "llava":
        kwargs["image_grid_pinpoints"] = [list(pair) for pair in spec.image_grid_pinpoints]
    if spec.family == "llava_onevision":  # no image_seq_length; the video token stays unused
        kwargs.pop("image_seq_length")
    return kwargs


def _tiled_config_kwargs(spec: ModelPreset, tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    """InternVLConfig / SmolVLMConfig kwargs: tower, LLM, image token and pixel shuffle."""
    kwargs: dict[str, Any] = {
        "vision_config": {"model_type": spec.vision_type, **spec.vision},
        "text_config": _text_kwargs(spec, tokenizer),
        "dtype": spec.dtype,
    }
    if spec.family == "internvl":
        context = tokenizer.convert_tokens_to_ids(INTERNVL_TOKENS["context_image_token"])
        return {
            **kwargs,
            "image_token_id": context,
            "image_seq_length": spec.tokens_per_tile,
            "downsample_ratio": 1 / spec.merge,
            "vision_feature_layer": spec.vision_feature_layer,
            "vision_feature_select_strategy": "default",  # drop the CLS token
        }
    image = tokenizer.convert_tokens_to_ids(IMAGE)
    return {**kwargs, "image_token_id": image, "scale_factor": spec.merge}


def make_config(preset: str, tokenizer: PreTrainedTokenizerFast | None = None) -> PreTrainedConfig:
    """The LlavaNextConfig / LlavaConfig / LlavaOnevisionConfig of `preset` (no weights)."""
    import transformers

    config_cls = getattr(transformers, CONFIG_CLASSES[get_preset(preset).family])
    return config_cls(**config_kwargs(preset, tokenizer))


CONFIG_CLASSES = {
    "llava_next": "LlavaNextConfig",
    "llava": "LlavaConfig",
    "llava_onevision": "LlavaOnevisionConfig",
    "internvl": "InternVLConfig",
    "smolvlm": "SmolVLMConfig",
    **tiny_qwen.CONFIG_CLASSES,
}


def _image_processor(spec: ModelPreset) -> Any:
    """The PIL image processor a hub checkpoint of this family and tower would ship."""
    import transformers

    side = spec.image_size
    if spec.family == "internvl":  # as the hub ships it: tiling off unless the caller asks
        return transformers.GotOcr2ImageProcessorPil(
            size={"height": side, "width": side}, crop_to_patches=False, max_patches=12
        )
    if spec.family == "smolvlm":  # as SmolVLM2-256M / 500M: long edge 4 tiles, 512 px tiles
        return transformers.SmolVLMImageProcessorPil(
            size={"longest_edge": 4 * side}, max_image_size={"longest_edge": side}
        )
    pinpoints = [list(pair) for pair in spec.image_grid_pinpoints]
    if spec.family == "llava_onevision":  # as llava-onevision-qwen2-*: the full image squashed
        square = {"size": {"height": side, "width": side}}
        return transformers.LlavaOnevisionImageProcessorPil(
            **square, image_grid_pinpoints=pinpoints
        )
    if not spec.has_cls:  # SigLIP, as llava-interleave: squashed to the square, mean 0.5
        return transformers.SiglipImageProcessorPil(size={"height": side, "width": side})
    common = {"size": {"shortest_edge": side}, "crop_size": {"height": side, "width": side}}
    if spec.family == "llava":
        return transformers.CLIPImageProcessorPil(**common)
    return transformers.LlavaNextImageProcessorPil(**common, image_grid_pinpoints=pinpoints)


def build_processor(preset: str, tokenizer: PreTrainedTokenizerFast | None = None) -> Any:
    """The processor of `preset`, with the chat template set.

    LlavaNextProcessor / LlavaProcessor; for OneVision, whose processor transformers cannot
    build without torchvision, its image processor, tokenizer and chat template
    (`runtime.processors.ImageTextProcessor`'s parts, saved the way the hub ships them).
    """
    from transformers import LlavaNextProcessor, LlavaProcessor

    spec = get_preset(preset)
    tokenizer = tokenizer if tokenizer is not None else build_family_tokenizer(spec.family)
    if spec.family == "llava_onevision":
        return _OnevisionParts(_image_processor(spec), tokenizer)
    if spec.family in TILED_CHAT_TEMPLATES:
        return _OnevisionParts(_image_processor(spec), tokenizer, TILED_CHAT_TEMPLATES[spec.family])
    if spec.family in QWEN_FAMILIES:
        processor = tiny_qwen.qwen_image_processor(spec)
        return _OnevisionParts(processor, tokenizer, tiny_qwen.QWEN_CHAT_TEMPLATE)
    processor_cls = LlavaNextProcessor if spec.family == "llava_next" else LlavaProcessor
    return processor_cls(
        image_processor=_image_processor(spec),
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy=spec.vision_feature_select_strategy,
        num_additional_image_tokens=1 if spec.has_cls else 0,
        chat_template=CHAT_TEMPLATE,
    )


class _OnevisionParts:
    """Image processor + tokenizer (chat template inside) saved side by side, as the hub does."""

    def __init__(
        self,
        image_processor: Any,
        tokenizer: PreTrainedTokenizerFast,
        chat_template: str = CHAT_TEMPLATE,
    ) -> None:
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.chat_template = chat_template

    def save_pretrained(self, directory: Path) -> None:
        self.image_processor.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        (Path(directory) / "chat_template.jinja").write_text(self.chat_template)


def _random_model(config: PreTrainedConfig, seed: int) -> PreTrainedModel:
    """Instantiate the model of `config` with transformers' own (seeded) initialisation."""
    import torch
    from transformers import AutoModelForImageTextToText

    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=config.dtype)
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    return model.eval()


def _write_checkpoint(preset: str, directory: Path, seed: int) -> None:
    """Write config, weights, generation config, tokenizer and processor into `directory`."""
    tokenizer = build_family_tokenizer(get_preset(preset).family)
    model = _random_model(make_config(preset, tokenizer), seed)
    model.save_pretrained(directory)
    build_processor(preset, tokenizer).save_pretrained(directory)


class _TargetTaken(Exception):
    """The target directory appeared (another build won the race) before our rename."""


def _publish(tmp: Path, out_dir: Path) -> None:
    """Rename the finished `tmp` to `out_dir`; _TargetTaken if `out_dir` is already taken."""
    try:
        os.rename(tmp, out_dir)
    except OSError as error:
        if out_dir.exists():
            raise _TargetTaken(str(out_dir)) from error
        raise


def _build_atomically(preset: str, out_dir: Path, seed: int) -> Path:
    """Build into a temporary sibling of `out_dir`, then rename it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is an ordinary directory
        _write_checkpoint(preset, tmp, seed)
        _publish(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def build_checkpoint(preset: str, out_dir: Path | str, seed: int = 0) -> Path:
    """Build the random-weight checkpoint `preset` into `out_dir` (a new path or an empty dir).

    Deterministic for a given seed; atomic: `out_dir` appears complete or not at all.
    """
    get_preset(preset)
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InvalidArgumentError(expected("out_dir", "a new or empty directory", str(out_dir)))
    try:
        return _build_atomically(preset, out_dir, seed)
    except _TargetTaken:
        raise InvalidArgumentError(
            expected("out_dir", "a new or empty directory", str(out_dir))
        ) from None


def cache_root() -> Path:
    """`$EDGE_HIRED_CACHE`, or `~/.cache/edge-hired` when unset."""
    root = os.environ.get("EDGE_HIRED_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "edge-hired"


def default_checkpoint(preset: str = "tiny-llava-next") -> Path:
    """The cached checkpoint `<cache>/models/<preset>-v1`, built (seed 0) on first use.

    Safe when processes race: each builds privately and the first rename wins; the others
    discard their copy and use the winner's.
    """
    get_preset(preset)
    target = cache_root() / "models" / f"{preset}-{CHECKPOINT_VERSION}"
    if not target.is_dir():
        with contextlib.suppress(_TargetTaken):  # another process published it first: use it
            _build_atomically(preset, target, seed=0)
    if not target.is_dir():
        raise ModelLoadError(expected("cached checkpoint", "a directory", str(target)))
    return target
