"""A pool that reuses large output buffers, so repeated evaluations skip first-touch page faults.

A fresh 40 MB output costs about as much in page faults as the kernel that fills it. The pool keeps the
base allocation of every large output it hands out and gives it out again once nothing but the pool
refers to it: every NumPy view of a buffer holds a reference to its base, so a buffer the user still
sees, directly or through any view, is never reused. Idle buffers (the user dropped them) are trimmed to
MAX_IDLE_BYTES in all at each new allocation, the oldest let go first: results of ever new sizes must not
pile up.
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 20     # smaller outputs come straight from np.empty: malloc reuses them already
MAX_BUFFERS = 32
MAX_IDLE_BYTES = 256 << 20   # two 120 MB results (3e7 float32) stay warm; eight 100 MB ones held 800 MB


class BufferPool:
    def __init__(self):
        self._buffers: list[np.ndarray] = []
        self._lock = threading.Lock()   # evaluations in several Python threads share the pool

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_BYTES:
            return np.empty(shape, dtype)
        with self._lock:
            return self._large(nbytes).view(dtype).reshape(shape)

    def _large(self, nbytes: int) -> np.ndarray:
        buffers = self._buffers
        for i in range(len(buffers)):
            # 2 references: the pool's list and getrefcount's own argument; any view adds one.
            if buffers[i].nbytes == nbytes and sys.getrefcount(buffers[i]) == 2:
                base = buffers.pop(i)
                buffers.append(base)  # most recently used last
                return base
        base = np.empty(nbytes, np.uint8)
        buffers.append(base)
        if len(buffers) > MAX_BUFFERS:
            buffers.pop(0)
        self._trim()
        return base

    def _trim(self) -> None:
        """Let the oldest idle buffers go until the idle ones hold at most MAX_IDLE_BYTES."""
        buffers = self._buffers
        idle = [i for i in range(len(buffers)) if sys.getrefcount(buffers[i]) == 2]   # counted as in ``_large``
        excess = sum(buffers[i].nbytes for i in idle) - MAX_IDLE_BYTES
        released = []
        for i in idle:   # oldest first
            if excess <= 0:
                break
            released.append(i)
            excess -= buffers[i].nbytes
        for i in reversed(released):   # from the end, so that the other indices stay valid
            del buffers[i]

    def clear(self) -> None:
        self._buffers.clear()


pool = BufferPool()
