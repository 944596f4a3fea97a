"""JAX settings scoped to admbjax's own calls: float64, and admbjax's compilation cache.

Importing admbjax changes no JAX setting. Each public entry point (``fit``, the formula and
batch front ends, the objective's methods) runs inside :func:`scope`, which turns on 64-bit
types for the duration of the call (thread-local, as ``jax.enable_x64`` is) and restores
the caller's setting on the way out; arrays handed back are numpy. A user's float32 JAX code
around an admbjax fit therefore runs as it did before, in float32.

``ADMBJAX_X64=0`` runs admbjax's own computations in JAX's float32 instead (to measure what
float32 costs, as the GPU benchmarks do); statistics needs float64, so it is the default.

The persistent compilation cache is scoped the same way (:func:`admbjax._cache.jax_cache`):
only admbjax's compiles use admbjax's cache directory.
"""

from __future__ import annotations

import contextlib
import functools
import os

import jax


def x64() -> bool:
    """Whether admbjax computes in float64 (``ADMBJAX_X64`` is not ``0``)."""
    return os.environ.get("ADMBJAX_X64", "1") != "0"


@contextlib.contextmanager
def scope():
    """admbjax's JAX settings inside, the caller's outside."""
    with jax.enable_x64(x64()):
        yield


def scoped(fn):
    """``fn`` run inside :func:`scope` (a decorator for the public entry points)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with scope():
            return fn(*args, **kwargs)

    return wrapper
