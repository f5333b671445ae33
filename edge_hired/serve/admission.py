"""Memory admission: what one request costs under the memory plan, and whether it fits now.

A request's plan (`plan_budget`, the planner's arithmetic) gives its peak at the visual-token
count it will keep, split into its KV cache (held while it decodes) and the rest (weights,
runtime, encoder and prefill activations: counted once, since requests prefill one at a time).
Everything in flight fits when max(rest) + sum(KV) + the image cache's bytes <= the cap; the
cache is evicted first, then a request waits. A request asking more visual tokens than fit
alone gets the plan's budget (`capped_by_memory`); with `--ttft-target` the budget is also held
to the largest count whose predicted TTFT meets the target (the server plans warm requests).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from edge_hired.errors import EdgeHiredError
from edge_hired.planner.arithmetic import (
    MemoryCap,
    Plan,
    plan_budget,
    predict_lines,
    required_bytes,
)
from edge_hired.planner.costs import CostKind
from edge_hired.planner.inputs import PlanInputs, PlanRequest
from edge_hired.profiles import DeviceProfile
from edge_hired.serve.api_errors import bad_request
from edge_hired.serve.prefix_cache import ByteLRU


@dataclass(frozen=True)
class Cost:
    """A request's planned bytes: its KV cache and the rest of its peak."""

    kv_bytes: int = 0
    rest_bytes: int = 0


@dataclass(frozen=True)
class Admission:
    """The planned visual-token ceiling of a request and what it costs."""

    token_cap: int | None
    capped: bool  # the request keeps fewer visual tokens than it asked for
    cost: Cost
    capped_by_memory: bool = False  # ... because of the memory plan (not the TTFT target)


class RequestPlanner:
    """Plans one request from the model's facts, the profile and the cap fixed at start."""

    def __init__(
        self,
        inputs: PlanInputs,
        profile: DeviceProfile,
        cap: MemoryCap,
        allocator: str,
        ttft_target_s: float | None = None,
    ) -> None:
        self.inputs, self.profile, self.cap, self.allocator = inputs, profile, cap, allocator
        self.ttft_target_s = ttft_target_s

    def admit(self, geometry, asked_tokens: int, prompt_tokens: int, max_new: int) -> Admission:
        """The request's ceiling and cost at min(asked, what fits alone) visual tokens."""
        request = PlanRequest(
            prompt_tokens=prompt_tokens,
            max_new_tokens=max_new,
            partitions=geometry.num_partitions,
            visual_tokens=int(geometry.valid_counts().sum()),
            image_hw=tuple(geometry.image_size),
            allocator=self.allocator,
        )
        memory = self._plan(request, None)
        plan = memory if self.ttft_target_s is None else self._plan(request, self.ttft_target_s)
        kept = min(asked_tokens, plan.budget_tokens)
        cost = self._cost(request, kept)
        by_memory = asked_tokens > memory.budget_tokens
        return Admission(plan.budget_tokens, asked_tokens > kept, cost, by_memory)

    def _plan(self, request: PlanRequest, ttft_target_s: float | None) -> Plan:
        """The planner's plan of one request; a plan that cannot be met is the client's 400."""
        try:
            return plan_budget(self.inputs, self.profile, request, self.cap, ttft_target_s)
        except EdgeHiredError as error:  # PlanError (memory) or BudgetError (TTFT target)
            raise bad_request(f"memory plan: {error}", "messages") from error

    def _cost(self, request: PlanRequest, visual: int) -> Cost:
        lines = predict_lines(self.inputs, self.profile, request, visual)
        kv = sum(line.bytes for line in lines if line.kind is CostKind.KV_CACHE)
        peak = required_bytes(self.inputs, self.profile, request, visual)
        return Cost(kv, peak - kv)


class MemoryGate:
    """Admits a request when everything in flight plus the image cache fits the cap."""

    def __init__(self, cap_bytes: int | None, cache: ByteLRU) -> None:
        self.cap_bytes = cap_bytes
        self.cache = cache
        self.in_flight: list[Cost] = []
        self.peak_planned_bytes = 0
        self._lock = threading.Lock()

    def try_admit(self, cost: Cost) -> bool:
        """Reserve `cost` if it fits (evicting cached prefixes first); False: wait."""
        with self._lock:
            if self.cap_bytes is None:
                self.in_flight.append(cost)
                return True
            costs = [*self.in_flight, cost]
            need = max(c.rest_bytes for c in costs) + sum(c.kv_bytes for c in costs)
            over = need + self.cache.bytes_used - self.cap_bytes
            if over > 0:
                self.cache.evict(over)
            if self.in_flight and need + self.cache.bytes_used > self.cap_bytes:
                return False
            self.in_flight.append(cost)
            self.peak_planned_bytes = max(self.peak_planned_bytes, need + self.cache.bytes_used)
            return True

    def release(self, cost: Cost) -> None:
        """The request finished (or left): its reservation is free again."""
        with self._lock:
            self.in_flight.remove(cost)


def text_cost(inputs: PlanInputs, prompt_tokens: int, max_new: int) -> Cost:
    """A request without an image holds only the KV of its text (and a linear-attention state,
    the same at any length, where the model has one)."""
    kv = inputs.kv_bytes_per_token * (prompt_tokens + max_new)
    return Cost(kv + inputs.llm.linear_state_bytes, 0)
