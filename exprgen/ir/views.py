"""Views as data: a tuple of NumPy-style steps (reshape, transpose, basic indexing, ...), applied by NumPy.

A view never copies. Steps are hashable (slices are spelled as tuples) so a view can be part of a graph
node. NumPy itself applies them, so shapes, error messages and strides are NumPy's:

- ``apply(array, steps)``: the view of a real array (for a buffer leaf, a zero-copy NumPy view);
- ``shape_after(shape, steps)``: the result shape, from a zero-strided dummy that owns no memory;
- ``layout_after(shape, steps)``: (shape, strides, offset) in elements of the view of a contiguous array,
  or None when the steps are not a view of it (a reshape that would need a copy).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

Step = tuple  # (kind, argument)


def _freeze(key):
    """A hashable spelling of an index expression (slices are not hashable before Python 3.12)."""
    if isinstance(key, tuple):
        return ("tuple", tuple(_freeze(k) for k in key))
    if isinstance(key, slice):
        return ("slice", key.start, key.stop, key.step)
    return key


def key_of(step_arg) -> tuple:
    """The NumPy index (a tuple of parts) that a getitem step's argument spells."""
    key = _thaw(step_arg)
    return key if isinstance(key, tuple) else (key,)


def _thaw(key):
    if isinstance(key, tuple) and key and key[0] == "tuple":
        return tuple(_thaw(k) for k in key[1])
    if isinstance(key, tuple) and key and key[0] == "slice":
        return slice(*key[1:])
    return key


def index_step(key) -> Step:
    """A basic-indexing step (a view); advanced indexing materialises instead (indexing.py), so anything
    beyond ints, slices, None and Ellipsis is refused here."""
    parts = key if isinstance(key, tuple) else (key,)
    for part in parts:
        if not (part is None or part is Ellipsis or isinstance(part, slice)
                or (isinstance(part, (int, np.integer)) and not isinstance(part, bool))):
            raise TypeError(f"a view takes only integers, slices, None and Ellipsis "
                            f"(got {type(part).__name__}); integer arrays and boolean masks go through indexing.getitem")
    frozen = tuple(int(p) if isinstance(p, np.integer) else p for p in parts)
    return ("getitem", _freeze(frozen if isinstance(key, tuple) else frozen[0]))


def apply(array: np.ndarray, steps: tuple[Step, ...]) -> np.ndarray:
    for kind, arg in steps:
        if kind == "reshape":
            array = array.reshape(arg)
        elif kind == "transpose":
            array = array.transpose(arg)
        elif kind == "getitem":
            key = _thaw(arg)
            parts = key if isinstance(key, tuple) else (key,)
            # NumPy answers a key of ints alone with a scalar, a copy; a trailing ... keeps it a 0-d view.
            array = array[parts if Ellipsis in parts else parts + (Ellipsis,)]
        elif kind == "broadcast_to":
            array = np.broadcast_to(array, arg)
        elif kind == "flip":
            # np.flip of a 0-d array is a scalar too; flipping it changes nothing.
            array = np.flip(array, arg) if array.ndim else array
        else:
            raise ValueError(f"unknown view step {kind!r}")
    return array


def shape_after(shape: tuple[int, ...], dtype: np.dtype, steps: tuple[Step, ...]) -> tuple[int, ...]:
    """The shape a view gives; NumPy's errors (IndexError, bad reshape) surface here, at the user's line."""
    dummy = np.broadcast_to(np.zeros((), dtype), shape)   # all strides 0: every reshape is a view
    try:
        return apply(dummy, steps).shape
    except ValueError as exc:
        if steps and steps[-1][0] == "reshape" and "reshape" in str(exc):
            raise ValueError(f"cannot reshape array of shape {shape} (size {math.prod(shape)}) into shape "
                             f"{steps[-1][1]}") from None
        raise


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def layout_after(shape: tuple[int, ...], steps: tuple[Step, ...], strides: tuple[int, ...] | None = None):
    """(shape, strides, offset) in elements of ``steps`` applied to an array of ``shape`` with these
    strides (default C-contiguous), or None when they are not a view of it."""
    itemsize = 8
    base = np.zeros(1, np.int64)
    strides = tuple(s * itemsize for s in (contiguous_strides(shape) if strides is None else strides))
    array = as_strided(base, shape=shape, strides=strides, writeable=False)  # never read: only addressed
    for kind, arg in steps:
        if kind == "reshape":
            try:
                array = array.reshape(arg, copy=False)
            except ValueError:
                return None
        else:
            array = apply(array, ((kind, arg),))
    offset = (array.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // itemsize
    return array.shape, tuple(s // itemsize for s in array.strides), offset


def is_identity(shape: tuple[int, ...], layout) -> bool:
    """Is this layout the contiguous array of ``shape`` itself (strides of size-1 axes do not matter)?"""
    out_shape, strides, offset = layout
    want = contiguous_strides(shape)
    return out_shape == shape and offset == 0 and all(n == 1 or a == b for n, a, b in zip(shape, strides, want))
