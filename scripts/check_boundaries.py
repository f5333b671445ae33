"""Count, from the source (AST), the two boundaries issue 17 draws, and print where crossed.

1. `.parts` reached from outside `edge_hired/runtime/`: a loaded pipeline's internals
   (`pipeline.parts.llm`, ...) belong to the runtime; everything else reads its accessors
   (`Pipeline.tokenizer`, `.processor`, `.facts`, `.device`, `.llm_config`, ...).
2. Calls of the device chooser (`choose_torch_device`) outside the target builder
   (`edge_hired/runtime/target.py`): the device is decided once, there.

Usage: python scripts/check_boundaries.py [PATH ...]   (default: edge_hired/ and scripts/)
Prints both counts and every place; exits 1 when either is above 0.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("edge_hired", "runtime")
TARGET_BUILDER = ("edge_hired", "runtime", "target.py")
CHOOSER = "choose_torch_device"


def _within(path: Path, segments: tuple[str, ...]) -> bool:
    """Whether `path` holds `segments` in a row (any checkout: this one, main, a worktree)."""
    names, size = tuple(path.as_posix().split("/")), len(segments)
    return any(names[i : i + size] == segments for i in range(len(names) - size + 1))


def python_files(paths: Iterable[Path]) -> list[Path]:
    """Every .py file under the given files and folders, sorted."""
    found: set[Path] = set()
    for path in paths:
        path = Path(path).resolve()
        found.update(path.rglob("*.py") if path.is_dir() else [path])
    return sorted(found)


def parts_reaches(path: Path, tree: ast.AST) -> list[int]:
    """Lines of `<expr>.parts` where `<expr>` is a name or attribute (not `Path(...).parts`)."""
    if _within(path, RUNTIME):
        return []
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "parts"
        and isinstance(node.value, ast.Name | ast.Attribute)
    ]


def chooser_calls(path: Path, tree: ast.AST) -> list[int]:
    """Lines calling the device chooser, by name or as an attribute, outside the target builder."""
    if _within(path, TARGET_BUILDER):
        return []
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = node.func
            name = getattr(called, "id", None) or getattr(called, "attr", None)
            if name == CHOOSER:
                lines.append(node.lineno)
    return lines


def crossings(paths: Iterable[Path]) -> dict[str, list[str]]:
    """{"parts": ["file:line", ...], "chooser": [...]} over the given files and folders."""
    found: dict[str, list[str]] = {"parts": [], "chooser": []}
    for path in python_files(paths):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(ROOT) if ROOT in path.parents else path
        found["parts"] += [f"{where}:{line}" for line in parts_reaches(path, tree)]
        found["chooser"] += [f"{where}:{line}" for line in chooser_calls(path, tree)]
    return found


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or [ROOT / "edge_hired", ROOT / "scripts"]
    found = crossings(paths)
    print(f".parts reached outside edge_hired/runtime/: {len(found['parts'])}")
    print(f"{CHOOSER} called outside {'/'.join(TARGET_BUILDER)}: {len(found['chooser'])}")
    for kind, places in found.items():
        for place in places:
            print(f"  {kind}: {place}")
    return 1 if any(found.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
