"""Valkyrie: route lookups served from Numba kernels over RCU snapshots."""

__version__ = "0.1.0"
