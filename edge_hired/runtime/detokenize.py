"""Token ids -> text, incrementally: a short window per token (O(n) in all), flushed at the end.

Re-decoding the whole answer at every token costs O(n^2). The window holds the ids whose text
was returned last as context (so tokenizers that drop a leading space at the start of a decode
still produce it), then the unread ids. Text ending in an incomplete multi-byte character waits
for the next id; `flush` sends what is left once the answer ends, so the pieces always join to
`decode(all ids)`, even when the answer stops inside a character.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass
class IncrementalDecoder:
    """Token ids in, the text they add out."""

    decode: Callable[[list[int]], str]
    token_ids: list[int] = field(default_factory=list)
    _prefix: int = 0
    _read: int = 0

    def add(self, ids: Iterable[int], final: bool = False) -> str:
        """Append `ids`; return the text they complete ("" while a character is unfinished)."""
        self.token_ids.extend(ids)
        context = self.decode(self.token_ids[self._prefix : self._read])
        window = self.decode(self.token_ids[self._prefix :])
        if len(window) <= len(context) or (not final and window.endswith("\ufffd")):
            return ""
        self._prefix, self._read = self._read, len(self.token_ids)
        return window[len(context) :]

    def flush(self) -> str:
        """The text still held back (half a character at the end of the answer)."""
        return self.add((), final=True)
