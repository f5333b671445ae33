"""Token ids -> text deltas, honouring stop strings and holding back half a character.

Text is decoded from all ids each time (as `TimingStreamer` does), so a multi-byte character
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
    sent: str = ""
    stopped: bool = False

    def feed(self, token_id: int) -> str:
        """Add a token; return the new text that can be sent now."""
        self.token_ids.append(token_id)
        text = self.decode(self.token_ids)
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            return self._send(text[:cut])
        if text.endswith("\ufffd"):
            return ""
        hold = max((len(s) - 1 for s in self.stops), default=0)
        return self._send(text[: len(text) - hold] if hold else text)

    def finish(self) -> str:
        """The rest of the text once generation ended without a stop string."""
        return "" if self.stopped else self._send(self.decode(self.token_ids))

    def _send(self, text: str) -> str:
        if not text.startswith(self.sent):
            return ""  # a later token changed earlier text: wait for it to settle
        delta, self.sent = text[len(self.sent) :], text
        return delta
