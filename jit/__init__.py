"""Numba kernels: plain numpy arrays in and out, one jit policy (see ``_policy``)."""
