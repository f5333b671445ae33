"""Pydantic v2 schemas of the files people and the exporter write, and their one-line errors.

Each schema (device profiles, export recipes, the bundle manifest, evaluation rows) is a frozen
pydantic dataclass with `config=SCHEMA`, so an unknown key is refused. `validate` reads data into
one and turns the first problem into the line users see, naming the file and the key:
"FILE: key: expected X, got Y", "FILE: unknown key 'k' (known: ...)" or "FILE: missing key 'k'".
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any, TypeVar

from pydantic import (
    ConfigDict,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

T = TypeVar("T")

#: The config of every schema dataclass (they also pass `frozen=True`).
SCHEMA = ConfigDict(extra="forbid")

EXPECTED, MISSING_WITH = "schema_expected", "schema_missing"
MISSING = frozenset({"missing", "missing_argument", "missing_keyword_only_argument", MISSING_WITH})
UNKNOWN = frozenset({"extra_forbidden", "unexpected_keyword_argument"})
SHOULD_BE = "Input should be "


def expect(what: str) -> WrapValidator:
    """Annotated marker: any failure of the type it wraps reads 'expected <what>'."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(EXPECTED, "expected {what}", {"what": what}) from None

    return WrapValidator(check)


def one_of(choices: Iterable[str]) -> WrapValidator:
    """Annotated marker for text: one of `choices` ('expected one of a, b, c')."""
    allowed = tuple(choices)

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if not isinstance(value, str) or value not in allowed:
            what = f"one of {', '.join(allowed)}"
            raise PydanticCustomError(EXPECTED, "expected {what}", {"what": what})
        return handler(value)

    return WrapValidator(check)


def non_blank(text: str) -> str:
    """`text` if it holds more than white space (an AfterValidator)."""
    if not text.strip():
        raise ValueError("blank text")
    return text


def rule_broken(what: str, got: str, key: str = "") -> PydanticCustomError:
    """For a model validator: a rule across keys failed ('<key>: expected <what>, got <got>')."""
    return PydanticCustomError(
        EXPECTED, "expected {what}, got {got}", {"what": what, "got": got, "key": key}
    )


def missing_key(key: str, hint: str = "") -> PydanticCustomError:
    """For a model validator: `key` is missing, and is required only with other keys' values."""
    return PydanticCustomError(MISSING_WITH, "missing {key}", {"key": key, "hint": hint})


def validate(kind: type[T], data: Any, origin: str, failure: type[Exception]) -> T:
    """`data` as a `kind`, or a `failure` whose message is `one_line` of the first problem."""
    try:
        return _adapter(kind).validate_python(data)
    except ValidationError as error:
        raise failure(one_line(error, origin, kind)) from None


@cache
def _adapter(kind: type) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def one_line(error: ValidationError, origin: str, kind: Any = None) -> str:
    """The first error as 'ORIGIN: key: expected X, got Y' (or an unknown or missing key)."""
    first = error.errors(include_url=False)[0]
    ctx = (first.get("ctx") or {}) if first["type"] in (EXPECTED, MISSING_WITH) else {}
    loc = first["loc"] + ((ctx["key"],) if ctx.get("key") else ())
    key = ".".join(str(part) for part in loc)
    if first["type"] in UNKNOWN:
        return f"{origin}: unknown key {key!r}{_known(kind, loc[:-1])}"
    if first["type"] in MISSING:
        hint = ctx.get("hint")
        return f"{origin}: missing key {key!r}{' ' + hint if hint else ''}"
    got = ctx["got"] if "got" in ctx else repr(first["input"])
    return f"{origin}: {key + ': ' if key else ''}expected {_expectation(first)}, got {got}"


def _expectation(error: ErrorDetails) -> str:
    """What was expected: ours as written, pydantic's with its 'Input should be ' cut off."""
    ctx = error.get("ctx") or {}
    if error["type"] == EXPECTED:
        return str(ctx["what"])
    message = error["msg"]
    if message.startswith(SHOULD_BE):
        return message.removeprefix(SHOULD_BE)
    return message[:1].lower() + message[1:]


def _known(kind: Any, parents: tuple[int | str, ...]) -> str:
    """' (known: a, b)': keys of the schema at `parents` in `kind` ('' if none there).

    Fields marked `exclude=True` are set by the loader, not written in files: not listed.
    """
    for part in parents:
        fields = getattr(kind, "__pydantic_fields__", {})
        kind = fields[part].annotation if part in fields else None
    fields = getattr(kind, "__pydantic_fields__", {})
    names = [name for name, field in fields.items() if not field.exclude]
    return f" (known: {', '.join(names)})" if names else ""
