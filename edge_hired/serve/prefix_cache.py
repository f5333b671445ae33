"""A least-recently-used store bounded in bytes: encoder outputs and prompt-prefix KV caches.

Keys start with the sha256 of the image bytes, so the same picture sent again (a new request or
the next turn) finds its encoder output, its selection and the KV of the prefix that holds its
visual tokens. The memory admission counts `bytes_used` and may `evict` to make room.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    """A cached value and the bytes it holds."""

    value: Any
    nbytes: int


class ByteLRU:
    """Thread-safe LRU whose entries' bytes sum to at most `capacity_bytes`."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes_used = 0

    def get(self, key: Hashable) -> Any | None:
        """The value (now most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry.value

    def held(self) -> list[Hashable]:
        """The keys held, least recently used first (no entry is touched)."""
        with self._lock:
            return list(self._entries)

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Store `value`, evicting the least recently used; too large a value is not kept."""
        with self._lock:
            if key in self._entries:
                self.bytes_used -= self._entries.pop(key).nbytes
            if nbytes > self.capacity_bytes:
                return
            self._entries[key] = Entry(value, nbytes)
            self.bytes_used += nbytes
            self._shrink_to(self.capacity_bytes)

    def evict(self, nbytes: int) -> int:
        """Free at least `nbytes` (or everything); returns the bytes freed."""
        with self._lock:
            before = self.bytes_used
            self._shrink_to(max(0, before - nbytes))
            return before - self.bytes_used

    def __len__(self) -> int:
        return len(self._entries)

    def _shrink_to(self, limit: int) -> None:
        while self._entries and self.bytes_used > limit:
            _, entry = self._entries.popitem(last=False)
            self.bytes_used -= entry.nbytes
