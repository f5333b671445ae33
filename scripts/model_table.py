"""The README's model table: supported checkpoints, their tower and signal, visual tokens per
image, and the plan on the 8 GB Orins, from each checkpoint's configuration alone.

    .venv/bin/python scripts/model_table.py

No weights are downloaded or allocated (configs from `edge_hired.models.reference_configs`,
parameters counted on the meta device). One request: the largest image layout of the model,
64 prompt + 64 new tokens, each profile's compute and KV dtype, desktop running. The Qwen-VL
rows (native resolution, one partition) are planned for images up to 1344 x 1344 px
(`PLAN_MAX_PIXELS`, the processor's `max_pixels` a deployment sets; the hub's default cap of
16.7 Mpx is 16,384 tokens).
"""

from __future__ import annotations

from edge_hired.facts.config_inputs import PLAN_MAX_PIXELS, inputs_from_config
from edge_hired.facts.memory_cap import memory_cap
from edge_hired.models import reference_configs as ref
from edge_hired.planner.arithmetic import PlanError, plan_budget
from edge_hired.planner.inputs import PlanRequest
from edge_hired.profiles import load_profile
from edge_hired.runtime.loading import model_facts
from edge_hired.units import GIB

DEVICES = ("orin-nano-8gb", "orin-nx-8gb")
QUANTIZATIONS = ("4bit", "none")
REQUEST = PlanRequest(prompt_tokens=64, max_new_tokens=64)
MODELS = {
    "llava-hf/llava-v1.6-vicuna-7b-hf": ref.llava_v16_vicuna_7b_config,
    "llava-hf/llava-interleave-qwen-0.5b-hf": ref.llava_interleave_qwen_0_5b_config,
    "llava-hf/llava-onevision-qwen2-0.5b-ov-hf": ref.llava_onevision_qwen2_0_5b_config,
    **{name: make for name, (make, _) in ref.TILED_REFERENCE_MODELS.items()},
}


def cell(config, device: str, quantization: str) -> str:
    """'1451 (20%)' visual tokens that fit, or 'does not fit (1.3 GiB short)'."""
    profile = load_profile(device)
    runtime = profile.runtime
    inputs = inputs_from_config(config, quantization, runtime.compute_dtype, runtime.kv_cache_dtype)
    try:
        plan = plan_budget(inputs, profile, REQUEST, memory_cap(profile))
    except PlanError as error:
        return f"does not fit ({error.deficit_bytes / GIB:.2f} GiB short)"
    share = 100 * plan.budget_tokens / plan.visual_tokens_available
    return f"{plan.budget_tokens} ({share:.0f}%), peak {plan.required_bytes / GIB:.1f} GiB"


def row(name: str, config) -> str:
    """One Markdown row."""
    facts = model_facts(config)
    tower = f"{config.vision_config.model_type.removesuffix('_vision_model')} "
    tower += (
        f"{facts.crop_size}/{facts.patch_size}, {config.vision_config.num_hidden_layers} layers"
    )
    inputs = inputs_from_config(config, "none", "float16")
    partitions, tokens = inputs.max_geometry()
    cells = [cell(config, d, q) for d in DEVICES for q in QUANTIZATIONS]
    per_image = f"{tokens} ({partitions} partition{'s' if partitions > 1 else ''})"
    return (
        f"| {name} | {facts.family} | {tower} | {facts.signal} | {per_image} | "
        + " | ".join(cells)
        + " |"
    )


def native_row(name: str, config) -> str:
    """One Markdown row of a Qwen-VL checkpoint."""
    tower = config.vision_config
    layout = f"{tower.patch_size} px patches, {tower.depth} blocks, {tower.spatial_merge_size}"
    layout += f"x{tower.spatial_merge_size} merge"
    _, tokens = inputs_from_config(config, "none", "float16").max_geometry()
    side = int(PLAN_MAX_PIXELS**0.5)
    cells = [cell(config, d, q) for d in DEVICES for q in QUANTIZATIONS]
    per_image = f"{tokens} (1 partition, {side}x{side} px)"
    return f"| {name} | {config.model_type} | {layout} | received | {per_image} | " + (
        " | ".join(cells) + " |"
    )


def table() -> str:
    """The Markdown table."""
    heads = [f"{d} {'4-bit' if q == '4bit' else 'fp16'}" for d in DEVICES for q in QUANTIZATIONS]
    lines = [
        "| checkpoint | family | tower | signal | visual tokens per image (max) | "
        + " | ".join(heads)
        + " |",
        "|---" * (5 + len(heads)) + "|",
    ]
    rows = [row(name, make()) for name, make in MODELS.items()]
    rows += [native_row(name, make()) for name, (make, _) in ref.QWEN_REFERENCE_MODELS.items()]
    return "\n".join(lines + rows)


if __name__ == "__main__":
    print(table())
