"""`bench.interleave.interleaved`: warm-ups first and discarded, then round-robin rounds."""

from __future__ import annotations

from edge_hired.bench.interleave import interleaved


def test_settings_are_warmed_once_then_measured_round_robin() -> None:
    calls: list[str] = []

    def setting(name: str):
        def run() -> str:
            calls.append(name)
            return f"{name}{calls.count(name)}"

        return run

    results = interleaved({"full": setting("full"), "hired": setting("hired")}, repeats=2)
    assert calls == ["full", "hired", "full", "hired", "full", "hired"]
    assert results == {"full": ["full2", "full3"], "hired": ["hired2", "hired3"]}
