"""The memory planner: a device profile, a model's facts and one request in, a plan out.

Pure arithmetic: no torch, transformers or onnxruntime (not even through what it imports) and no
files; `edge_hired.facts` gathers everything it is given (`tests/unit/test_architecture.py`).
A request's predicted peak is the larger of its two phases, since the encoder's activations
are freed before the LLM prefills:

    fixed (runtime + CUDA context + LLM and encoder weights + image preprocessing)
    + max(encoder activations of all partitions,
          KV bytes per token x (visual + prompt + new tokens) + prefill activations)
    + what both phases hold (projected visual tokens, embeddings)
    + margin,

where KV bytes per token = 2 x layers x KV heads x head dim x dtype bytes. With the encoder in
ONNX Runtime on a GPU provider (`PlanRequest.encoder_held`) its arena is never returned, so the
encoder's activations for the model's largest layout become a fixed cost and the phases add;
`costs.ort_gpu_mem_limit` is the arena limit that holds ONNX Runtime to that figure. Lines are
summed by their typed kind (`costs.CostKind`, `Phase`), never by display name. The budget is the
largest visual-token count whose peak plus margin fits under the cap (and, with a TTFT target,
whose predicted TTFT meets it). Each figure is read (manifest, profile, calibration) or
modelled, and the plan says which in its reasons.

Modules, each with one job:
- `shapes`: the language model's and vision encoder's shapes, image layouts.
- `inputs`: `PlanInputs` (from a bundle manifest; from a config in `facts.config_inputs`) and
  `PlanRequest`.
- `costs`: the memory model, one cost line per component; `measured`: calibrated figures that
  replace modelled ones for the model they were measured with.
- `arithmetic`: peak, margin, the largest fit, and `plan_budget`.
- `estimates`: roofline TTFT and decode rate; `fits`: least-squares fits of measured timings;
  `ttft`: predicted TTFT and the largest count that meets a target.
- `fit_options`: what would fit when a plan does not (headless, 4-bit, KV dtype, smaller LLM,
  fewer new tokens), each with its token count.
"""
