"""Token ids -> text deltas, honouring stop strings and holding back half a character.

Decoding is `edge_hired.runtime.detokenize.IncrementalDecoder` (a short window per token, O(n)
in all; a multi-byte character split over tokens is sent whole, and what is held back is flushed
at the end, so an answer that ends inside a character is `decode(ids)`, as `run`'s text is); on
top of it, text that may be the start of a stop string waits until it is known not to be one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge_hired.runtime.detokenize import IncrementalDecoder


@dataclass
class TextTracker:
    """The answer so far, what was already sent, and whether a stop string ended it."""

    decode: Callable[[list[int]], str]
    stops: tuple[str, ...] = ()
    text: str = ""  # decoded so far
    sent: int = 0  # characters of `text` already sent
    stopped: bool = False
    _decoder: IncrementalDecoder | None = None

    def __post_init__(self) -> None:
        self._decoder = IncrementalDecoder(self.decode)

    @property
    def token_ids(self) -> list[int]:
        """The generated ids so far."""
        return self._decoder.token_ids

    def feed(self, token_id: int) -> str:
        """Add a token; return the new text that can be sent now."""
        self.text += self._decoder.add((token_id,))
        if self._cut_at_stop():
            return self._send(len(self.text))
        hold = max((len(s) - 1 for s in self.stops), default=0)
        return self._send(len(self.text) - hold)

    def finish(self) -> str:
        """The rest of the text once generation ended (the decoder's held-back bytes too)."""
        if self.stopped:
            return ""
        self.text += self._decoder.flush()
        self._cut_at_stop()
        return self._send(len(self.text))

    def _cut_at_stop(self) -> bool:
        """Cut `text` before the first stop string in it (and mark the answer stopped)."""
        cut = min((i for i in (self.text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut < 0:
            return False
        self.text, self.stopped = self.text[:cut], True
        return True

    def _send(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        delta, self.sent = self.text[self.sent : upto], upto
        return delta
