"""Token ids -> text deltas, honouring stop strings and holding back half a character.

Only a short window of ids is decoded per token (the ids since the last emitted text, plus the
ones before them for context), so a long answer costs O(n), not O(n^2); a multi-byte character
split over tokens is sent whole, and text that may be the start of a stop string waits until
it is known not to be one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TextTracker:
    """The answer so far, what was already sent, and whether a stop string ended it."""

    decode: Callable[[list[int]], str]
    stops: tuple[str, ...] = ()
    token_ids: list[int] = field(default_factory=list)
    text: str = ""  # decoded so far
    sent: int = 0  # characters of `text` already sent
    stopped: bool = False
    _prefix: int = 0  # ids[_prefix:_read] decode to the text's tail (context)
    _read: int = 0

    def feed(self, token_id: int) -> str:
        """Add a token; return the new text that can be sent now."""
        self.token_ids.append(token_id)
        self.text += self._new_text()
        cut = min((i for i in (self.text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            return self._send(cut)
        hold = max((len(s) - 1 for s in self.stops), default=0)
        return self._send(len(self.text) - hold)

    def finish(self) -> str:
        """The rest of the text once generation ended without a stop string."""
        return "" if self.stopped else self._send(len(self.text))

    def _new_text(self) -> str:
        """Text the newest ids add, or "" while they end inside a character."""
        context = self.decode(self.token_ids[self._prefix : self._read])
        window = self.decode(self.token_ids[self._prefix :])
        if len(window) <= len(context) or window.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self.token_ids)
        return window[len(context) :]

    def _send(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        delta, self.sent = self.text[self.sent : upto], upto
        return delta
