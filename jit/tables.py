"""A snapshot's lookup tables handed to a kernel as one int64 descriptor instead of 25 arguments.

Numba's dispatcher types and unboxes every argument of every call. On a server between
requests (cold caches), a kernel taking the 28 arguments and returning at once cost 17.6us at
P50, the real single-key lookup 21.7us. The descriptor is one array: per table array its
address and length, per scalar its value; ``unpack`` turns it back into arrays inside the
kernel at no cost.

The descriptor does not keep the arrays alive: whoever holds it must hold them too
(``Snapshot`` keeps both in one tuple), and ``describe`` checks every dtype, so a table whose
layout changed fails loudly here instead of being read as the wrong type.
"""

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from jit._policy import kernel

__all__ = ["LAYOUT", "describe", "unpack"]

_SCALAR = None
# ``jit.resolve.resolve``'s table arguments, in order: a dtype for an array, _SCALAR for an integer.
LAYOUT = (
    ("fit_tags", np.uint8), ("fit_refs", np.uint32), ("fit_arena", np.uint8), ("fit_seed", _SCALAR),
    ("fit_stats", np.int64), ("fit_depth", _SCALAR),
    ("v4_root", np.int32), ("v4_slots", np.int32), ("v4_value", np.int32), ("v4_plen", np.int16),
    ("v6_root", np.int32), ("v6_slots", np.int32), ("v6_value", np.int32), ("v6_plen", np.int16),
    ("nm_root", _SCALAR), ("nm_slots", np.int32), ("nm_nroute", np.int32), ("nm_skip_off", np.int64),
    ("nm_skip_len", np.int32), ("nm_skipb", np.uint8), ("nm_value", np.int32), ("nm_plen", np.int16),
    ("nm_rule_off", np.int64), ("nm_rule_bytes", np.uint8),
    ("default", _SCALAR),
)


def describe(parts):
    """The descriptor of ``parts`` (arrays and integers in ``LAYOUT`` order); raises ``TypeError`` on a mismatch."""
    if len(parts) != len(LAYOUT):
        raise TypeError(f"expected {len(LAYOUT)} table parts, got {len(parts)}")
    desc = np.zeros(2 * len(LAYOUT), np.int64)
    for i, ((name, dtype), part) in enumerate(zip(LAYOUT, parts)):
        if dtype is _SCALAR:
            desc[2 * i] = part.view(np.int64) if isinstance(part, np.uint64) else int(part)
            continue
        if not isinstance(part, np.ndarray) or part.dtype != dtype or part.ndim != 1 or not part.flags.c_contiguous:
            got = f"{part.dtype}[{part.ndim}d]" if isinstance(part, np.ndarray) else type(part).__name__
            raise TypeError(f"{name} must be a contiguous 1-d {np.dtype(dtype)} array, got {got}")
        desc[2 * i] = part.ctypes.data
        desc[2 * i + 1] = part.shape[0]
    return desc


@intrinsic
def _voidptr(typingctx, addr):
    """The int64 ``addr`` as a ``void*``."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)
    return types.voidptr(types.int64), codegen


@kernel(inline="always")
def _view(desc, i, dtype):
    return numba.carray(_voidptr(desc[2 * i]), desc[2 * i + 1], dtype)


@kernel(inline="always")
def unpack(t):
    """``describe``'s inverse, in a kernel: the 25 table arguments of ``jit.resolve.resolve``."""
    return (_view(t, 0, np.uint8), _view(t, 1, np.uint32), _view(t, 2, np.uint8), np.uint64(t[6]),
            _view(t, 4, np.int64), t[10],
            _view(t, 6, np.int32), _view(t, 7, np.int32), _view(t, 8, np.int32), _view(t, 9, np.int16),
            _view(t, 10, np.int32), _view(t, 11, np.int32), _view(t, 12, np.int32), _view(t, 13, np.int16),
            t[28], _view(t, 15, np.int32), _view(t, 16, np.int32), _view(t, 17, np.int64),
            _view(t, 18, np.int32), _view(t, 19, np.uint8), _view(t, 20, np.int32), _view(t, 21, np.int16),
            _view(t, 22, np.int64), _view(t, 23, np.uint8),
            t[48])
