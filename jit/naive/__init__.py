"""Slow, obviously-right pure-Python twins of the kernels in ``jit/``; tests compare against them."""
