"""Peak resident memory of this process, resettable per request.

Linux keeps the high-water mark of RSS in /proc/self/status (VmHWM); writing "5" to
/proc/self/clear_refs resets it to the current RSS, so a request's peak can be measured even
after earlier requests in the same process. Elsewhere we fall back to getrusage (a lifetime peak).
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark; False where the OS does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float:
    """Peak resident set size in MiB since the last reset (or process start)."""
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mib() -> float:
    """Resident set size now, in MiB."""
    rss = _status_kib("VmRSS")
    return rss / 1024 if rss is not None else peak_rss_mib()


def _status_kib(field: str) -> int | None:
    """A kB field of /proc/self/status, or None off Linux."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
