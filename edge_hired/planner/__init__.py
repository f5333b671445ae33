"""The memory planner: a device profile and a model's facts in, the largest visual-token budget out.

Arithmetic, with no torch at import time; only `run_plan` reads files and devices (the
profile, a manifest or config, the memory free now), inside its functions. The predicted peak
of one request is

    runtime + CUDA context + LLM weights + encoder weights + image preprocessing
    + encoder activations (all partitions) + dequantisation buffer
    + KV bytes per token x (visual + prompt + new tokens) + prefill activations x (visual + prompt)
    + margin,

where KV bytes per token = 2 x layers x KV heads x head dim x dtype bytes. Everything but the
visual-token count is fixed for a request, so the budget is the largest count whose peak plus
margin fits under the cap. Each figure is either read (manifest, profile) or modelled; the plan
says which in its reasons.

Modules, each with one job:
- `units`: byte units, dtype names and sizes.
- `shapes`: the language model's and vision encoder's shapes, image layouts.
- `inputs`: `PlanInputs` (from a bundle manifest or a config) and `PlanRequest`.
- `costs`: the memory model, measured figures and one cost line per component.
- `arithmetic`: peak, margin, the largest fit, and `plan_budget`.
- `estimates`: roofline TTFT and decode rate.
- `run_plan`: the facts of one request on this machine (`RunFacts`, from a config, a manifest or
  a loaded pipeline) and its plan, the cap held to the memory free now (`plan_for_run`,
  `plan_for_pipeline`).
"""
