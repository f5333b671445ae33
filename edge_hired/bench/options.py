"""What a benchmark measures: its options, the settings they expand to, and the schedule.

`BenchOptions` is the whole request (its lists are read by `edge_hired.sweep`);
`settings_for` expands budgets x strategies into `Setting`s ("full" runs once, with strategy
full; adaptive strategies such as PruMerge run once, they choose their own count) and
`schedule` orders them round-robin. The device profile named in the options is planned here
too (`plan_profile`): per image, the visual-token cap the memory planner gives the pipeline on
that profile (`edge_hired.facts.run_facts.plan_for_pipeline`), applied to every setting as
`SelectionOptions.cap`, so each setting keeps min(its budget, the cap).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.facts.run_facts import PlanLimits, PlanSource, plan_for_pipeline
from edge_hired.planner.arithmetic import Plan
from edge_hired.runtime.images import load_image
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from edge_hired.sweep import ADAPTIVE_STRATEGIES, FULL, parse_budgets, parse_strategies
from edge_hired.units import gib

if TYPE_CHECKING:
    from edge_hired.profiles import DeviceProfile

#: What "full" runs as under a profile's cap below the image's tokens (full ignores caps).
CAPPED_FULL = "hired"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class Setting:
    """One thing to measure: a strategy at a budget ratio (None: full, or adaptive)."""

    strategy: str
    ratio: float | None = None

    @property
    def budget_label(self) -> str:
        if self.strategy == FULL:
            return FULL
        return "adaptive" if self.ratio is None else f"{self.ratio:g}"

    @property
    def label(self) -> str:
        return FULL if self.strategy == FULL else f"{self.strategy}@{self.budget_label}"

    def selection(self, seed: int = 0, cap: int | None = None) -> SelectionOptions:
        """Its selection options; under a `cap`, full runs as CAPPED_FULL at the cap."""
        if self.strategy == FULL and cap is not None:
            return SelectionOptions(strategy=CAPPED_FULL, cap=cap, seed=seed)
        return SelectionOptions(strategy=self.strategy, ratio=self.ratio, cap=cap, seed=seed)


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how often; the defaults are the paper's Table 4 budgets."""

    budgets: tuple[str | float, ...] = (FULL, 0.4, 0.3, 0.2, 0.1)
    strategies: tuple[str, ...] = ("hired",)
    images: tuple[str | Path, ...] = ()  # files or directories; empty: the bundled sample
    prompt: str = "Describe the image."
    repeats: int = 3
    warmup: int = 1  # warm-up rounds, each runs every setting once, not recorded
    max_new_tokens: int = 16
    fixed_length: bool = True  # generate exactly max_new_tokens (min_new_tokens) for fair rates
    profile: str | DeviceProfile | None = None  # its planned token cap is applied per image
    ttft_target_s: float | None = None  # with profile: cap tokens to meet this predicted TTFT
    headless: bool = False  # with profile: plan with the desktop's memory back
    memory_cap_gib: float | None = None  # with profile: overrides its memory figure
    source: PlanSource | None = None  # the pipeline's bundle or model: what the plan reads
    telemetry_backend: str = "auto"
    telemetry_interval_s: float = 0.05
    plots: bool = True
    progress: bool = True
    seed: int = 0


def settings_for(options: BenchOptions) -> list[Setting]:
    """full first (if asked), then each ratio x each budgeted strategy, then adaptive ones."""
    strategies = parse_strategies(options.strategies)
    budgets = parse_budgets(options.budgets)
    ratios = [b for b in budgets if b != FULL]
    settings = [Setting(FULL)] if FULL in budgets else []
    settings += [Setting(s, r) for r in ratios for s in strategies if s not in ADAPTIVE_STRATEGIES]
    settings += [Setting(s) for s in strategies if s in ADAPTIVE_STRATEGIES]
    return settings


def check_options(options: BenchOptions) -> None:
    """Counts and prompt a benchmark can honour."""
    for name, low in (("repeats", 1), ("warmup", 0), ("max_new_tokens", 1)):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidArgumentError(expected(name, f"an integer >= {low}", value))
    if not isinstance(options.prompt, str) or not options.prompt.strip():
        raise InvalidArgumentError(expected("prompt", "non-empty text", options.prompt))
    interval = options.telemetry_interval_s
    if not interval > 0:
        raise InvalidArgumentError(expected("telemetry interval (s)", "> 0", interval))


def image_paths(sources: Iterable[str | Path]) -> list[Path]:
    """Image files from files and directories (sorted); the bundled sample when none given."""
    paths: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InvalidArgumentError(
                    expected(f"images in {path}", " or ".join(IMAGE_SUFFIXES) + " files", "none")
                )
            paths += found
        else:
            paths.append(path)
    if not paths:
        from edge_hired.data import sample_image_path

        paths.append(sample_image_path())
    for path in paths:
        load_image(path)  # fail fast on a bad file, before any model time is spent
    return paths


@dataclass(frozen=True)
class Slot:
    """One request in the schedule."""

    round: int
    image: Path
    setting: Setting


def schedule(settings: Sequence[Setting], images: Sequence[Path], rounds: int) -> list[Slot]:
    """Round-robin: each round runs every image x setting once, in the same order."""
    return [Slot(r, image, s) for r in range(rounds) for image in images for s in settings]


# Profiles: the memory planner's visual-token cap per image


@dataclass(frozen=True)
class ProfilePlan:
    """A device profile's planned visual-token cap per image, and what the bench did with it."""

    name: str | None = None
    caps: Mapping[Path, int] = field(default_factory=dict)  # image -> the plan's budget_tokens
    available: Mapping[Path, int] = field(default_factory=dict)  # image -> valid visual tokens
    note: str = ""

    def cap_for(self, image: Path) -> int | None:
        """The cap applied to `image`'s requests; None when none was planned or none binds."""
        cap = self.caps.get(image)
        return cap if cap is not None and cap < self.available[image] else None

    def facts(self) -> dict[str, Any]:
        """What results record: the name, the tightest cap, every image's cap, the note."""
        return {
            "profile": self.name,
            "profile_cap_tokens": min(self.caps.values(), default=None),
            "profile_caps": {str(path): cap for path, cap in self.caps.items()},
            "profile_note": self.note,
        }


def load_device_profile(name: str | DeviceProfile | None) -> DeviceProfile | None:
    """The device profile (loaded once by the target; a name or file is loaded here, validated:
    ProfileError lists the known ones); None if unnamed."""
    from edge_hired.profiles import DeviceProfile, load_profile

    if name is None or isinstance(name, DeviceProfile):
        return name
    return load_profile(name)


def plan_profile(
    profile: DeviceProfile | None,
    pipeline: Pipeline,
    options: BenchOptions,
    images: Sequence[Path],
) -> ProfilePlan:
    """Plan each image's request on `profile` (PlanError when not one visual token fits).

    Needs `options.source`, where the pipeline was loaded from; without it only the name is
    recorded and nothing is capped.
    """
    if profile is None:
        return ProfilePlan()
    if options.source is None:
        note = "name recorded only: no bundle or model source to plan from (BenchOptions.source)"
        return ProfilePlan(profile.name, note=note)
    plans: dict[Path, Plan] = {}
    for path in dict.fromkeys(images):
        image = load_image(path)
        plans[path] = plan_for_pipeline(
            pipeline,
            options.source,
            profile,
            (image.height, image.width),
            options.prompt,
            options.max_new_tokens,
            memory_cap_gib=options.memory_cap_gib,
            limits=PlanLimits(ttft_target_s=options.ttft_target_s, headless=options.headless),
        )
    caps = {path: plan.budget_tokens for path, plan in plans.items()}
    available = {path: plan.visual_tokens_available for path, plan in plans.items()}
    return ProfilePlan(profile.name, caps, available, _cap_note(profile.name, plans, options))


def _cap_note(name: str, plans: Mapping[Path, Plan], options: BenchOptions) -> str:
    """What was applied: the cap per image, its memory cap, and the strategies it cannot bind."""
    per_image = "; ".join(
        f"{path.name}: {plan.budget_tokens} of {plan.visual_tokens_available} "
        f"(memory cap {gib(plan.cap.bytes)} GiB: {plan.cap.reason})"
        for path, plan in plans.items()
    )
    adaptive = ", ".join(s for s in options.strategies if s in ADAPTIVE_STRATEGIES)
    unbound = f"; {adaptive} keep an adaptive count the cap does not bind" if adaptive else ""
    return (
        f"{name}: planned visual-token cap applied to every setting as SelectionOptions.cap "
        f"(kept = min(budget, cap)); {per_image}. Where the cap is below an image's tokens, "
        f"full runs as {CAPPED_FULL} at the cap{unbound}."
    )


def profile_facts(
    profile: DeviceProfile | None,
    pipeline: Pipeline,
    options: BenchOptions = BenchOptions(),
    images: Sequence[Path] = (),
) -> dict[str, Any]:
    """The profile facts results record: `plan_profile(...).facts()`."""
    return plan_profile(profile, pipeline, options, images).facts()
