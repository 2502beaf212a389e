"""Layout geometry: how a kernel's loop walks its arrays, decided from their shapes and strides alone.

``loop_geometry`` decides the loop nest: dims are coalesced across all arrays where the layouts allow,
and each array's innermost stride then picks its load form in render.py (contiguous, broadcast or
strided). Sizes and strides are kernel arguments, so one binary serves every size with the same
innermost strides. A layout is (shape, strides in elements), as ``layout`` makes one from NumPy's bytes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ..schedule.fusion import Kernel


def layout(shape: tuple, strides_bytes: tuple, itemsize: int) -> tuple[tuple, tuple]:
    """(shape, strides in elements) of an array with these NumPy strides (in bytes)."""
    return shape, tuple(s // itemsize for s in strides_bytes)


def broadcast(shape: tuple[int, ...], arr_shape: tuple, arr_strides: tuple) -> list[int]:
    """The array's strides over ``shape``: 0 along the dims it is broadcast over."""
    pad = len(shape) - len(arr_shape)
    return [0 if i < pad or arr_shape[i - pad] == 1 else arr_strides[i - pad] for i in range(len(shape))]


def coalesce(shape: tuple[int, ...], strides: list[list[int]]):
    """Size-1 dims dropped, and adjacent dims merged wherever every array steps through them as one."""
    dims = [d for d in range(len(shape)) if shape[d] != 1]
    out_shape = [shape[d] for d in dims]
    out_strides = [[s[d] for d in dims] for s in strides]
    d = len(out_shape) - 1
    while d > 0:
        if all(s[d - 1] == s[d] * out_shape[d] for s in out_strides):
            out_shape[d - 1] *= out_shape[d]
            del out_shape[d]
            for s in out_strides:
                s[d - 1] = s[d]
                del s[d]
        d -= 1
    if not out_shape:
        return (1,), [[0] for _ in strides]
    return tuple(out_shape), out_strides


def loop_geometry(shape: tuple[int, ...], layouts: list[tuple[tuple, tuple]]):
    """(loop shape, per-array strides) for arrays given as (shape, strides in elements), broadcast to
    ``shape`` and coalesced."""
    return coalesce(shape, [broadcast(shape, *array) for array in layouts])


def rows_geometry(shape: tuple[int, ...], axes: tuple[int, ...], layouts: list[tuple[tuple, tuple]]):
    """((outer shape, outer strides), (inner shape, inner strides)) of a rows kernel: the kept dims and the
    reduced dims of ``shape``, each group coalesced on its own."""
    full = [broadcast(shape, *array) for array in layouts]
    kept = [d for d in range(len(shape)) if d not in axes]
    outer = coalesce(tuple(shape[d] for d in kept), [[s[d] for d in kept] for s in full])
    inner = coalesce(tuple(shape[d] for d in axes), [[s[d] for d in axes] for s in full])
    return outer, inner


class Launch(NamedTuple):
    """What a kernel's entry receives besides its data: ``shape`` (its size arguments), ``strides`` (per
    array, inputs then outputs, each as long as the others) and ``total`` (the work items it splits).
    ``along``: the dim (an index into each array's strides) the kernel's loads step along."""

    shape: list[int]
    strides: list[list[int]]
    total: int
    along: int = -1

    @property
    def inner_strides(self) -> list[int]:
        """Each array's stride along the dim its loads step along: what picks its load form in the source."""
        return [s[self.along] for s in self.strides]


def map_launch(kernel: Kernel, layouts: list[tuple[tuple, tuple]]) -> Launch:
    """A map kernel's: one loop over the coalesced shape; every element is a work item."""
    loop_shape, strides = loop_geometry(kernel.shape, layouts)
    return Launch(list(loop_shape), strides, math.prod(kernel.shape))


def rows_launch(kernel: Kernel, layouts: list[tuple[tuple, tuple]]) -> Launch:
    """A rows kernel's: the shape arguments are (outer ndim, inner ndim, outer dims, inner dims), each
    array's strides its outer then its inner ones; every row is a work item."""
    (outer, outer_strides), (inner, inner_strides) = rows_geometry(kernel.shape, kernel.axes, layouts)
    return Launch([len(outer), len(inner), *outer, *inner],
                  [o + i for o, i in zip(outer_strides, inner_strides)], math.prod(outer))


def columns_launch(kernel: Kernel, layouts: list[tuple[tuple, tuple]]) -> Launch:
    """A columns kernel's: a rows kernel's arguments, its loads stepping along the last kept dim (from one
    row to the next) instead of along a row."""
    launch = rows_launch(kernel, layouts)
    return launch._replace(along=launch.shape[0] - 1)
