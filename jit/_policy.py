"""The one place that sets how every kernel is compiled.

``cache=True`` keeps compile time off the second start-up; ``nogil=True`` lets
reader threads run lookups in parallel. Sizes and epochs are always passed as
arguments: cached machine code freezes module globals.
"""

import numba

__all__ = ["kernel"]


def kernel(fn=None, **overrides):
    """Compile ``fn`` with the project's jit policy (usable bare or with overrides)."""
    opts = {"cache": True, "nogil": True, "fastmath": False}
    opts.update(overrides)
    if fn is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(fn)
