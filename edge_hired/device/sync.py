"""Time marks that mean what they say on an asynchronous device.

CUDA kernels return before they finish, so a `perf_counter` read after an encoder call on a GPU
times the launch, not the work, and the work lands in whatever phase waits next. `DeviceClock`
is the one place that knows this: `mark()` waits for the device's queued work (a no-op on the
CPU) and then reads the clock. Every phase boundary of a request goes through it.
"""

from __future__ import annotations

import time

import torch


class DeviceClock:
    """Phase marks for one device: drain its queue, then read `time.perf_counter`."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)

    @property
    def asynchronous(self) -> bool:
        """Whether work on this device can still be running when a call returns."""
        return self.device.type == "cuda"

    def synchronize(self) -> None:
        """Wait until the device has finished everything queued so far."""
        if self.asynchronous:
            torch.cuda.synchronize(self.device)

    def mark(self) -> float:
        """A `perf_counter` time taken after the device's queued work has finished."""
        self.synchronize()
        return time.perf_counter()
