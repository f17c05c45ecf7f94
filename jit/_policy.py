"""The one place that sets how every kernel is compiled.

``cache=True`` keeps compile time off the second start-up; ``nogil=True`` lets
the writer's table builds run while the event loop serves lookups. The kernels the
event loop calls on every request override it with ``nogil=False``: for a call of a
few microseconds, dropping the GIL only invites the writer thread in, and the loop
then waits up to a switch interval to get it back. Sizes and epochs are always
passed as arguments: cached machine code freezes module globals.
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
