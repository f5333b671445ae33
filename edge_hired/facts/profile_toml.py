"""Write a device profile as commented TOML, atomically, and check it loads back.

`profile calibrate` describes every figure it measured in a comment above the key. The text is
written to a temporary sibling and renamed over the target only once it parses and validates
through the same loader `--profile` uses, so a failed write never leaves a half profile.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_hired.profiles import DeviceProfile, profile_from_dict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

#: A section or key -> the comment lines written above it ("memory", "memory.total_gib").
Comments = Mapping[str, str]


def toml_value(value: Any) -> str:
    """One TOML value: bool, int, float, string (JSON escapes are TOML's) or a list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _comment(comments: Comments, key: str) -> list[str]:
    text = comments.get(key)
    return [f"# {line}" if line else "#" for line in text.splitlines()] if text else []


def _table(name: str, table: Mapping[str, Any], comments: Comments, header: str) -> list[str]:
    """`[name]` (or `[[name]]` via `header`) with its plain keys; nested lists of tables after."""
    lines = ["", *_comment(comments, name), header]
    nested = []
    for key, value in table.items():
        if isinstance(value, list | tuple) and value and isinstance(value[0], Mapping):
            nested.append((f"{name}.{key}", value))
            continue
        lines += [*_comment(comments, f"{name}.{key}"), f"{key} = {toml_value(value)}"]
    for child, rows in nested:
        for index, row in enumerate(rows):  # the comment once, above the first
            said = comments if index == 0 else {}
            lines += _table(child, row, said, f"[[{child}]]")
    return lines


def render_profile(data: Mapping[str, Any], comments: Comments) -> str:
    """The profile's TOML text: top-level keys, then one table per section, comments above."""
    lines = _comment(comments, "")
    for key, value in data.items():
        if not isinstance(value, Mapping):
            lines += [*_comment(comments, key), f"{key} = {toml_value(value)}"]
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines += _table(key, value, comments, f"[{key}]")
    return "\n".join(lines) + "\n"


def write_profile(path: Path, data: Mapping[str, Any], comments: Comments) -> DeviceProfile:
    """Render, check that the text loads back as a profile, then rename it into place."""
    text = render_profile(data, comments)
    profile = profile_from_dict(tomllib.loads(text), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return profile
