"""JAX's persistent compilation cache, on by default in a per-user directory.

Compile time is part of the user's wait: with the cache, a second process fitting a model
of the same structure and shape loads the compiled program from disk instead of compiling
it (sleepstudy from the command line: 10.4 s cold, 3.7 s warm). The cache lives in
``$XDG_CACHE_HOME/admbjax/jax`` (``~/.cache/admbjax/jax``). ``ADMBJAX_COMPILATION_CACHE``
changes that: ``0`` (or ``off``, ``false``, ``no``) turns it off, a path puts it there.
A directory that cannot be created (a read-only home) turns it off silently.

It was opt-in at first because jaxlib 0.10.2 aborted a test process twice while writing
a Student-t program with adaptive quadrature to the cache. That was in a process holding
hundreds of live executables (since bounded, ``_fit.MAX_PROGRAMS``); the same fits in
fresh processes with the cache on, repeated, did not abort again (session 3).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax


def cache_dir() -> Path | None:
    """The cache directory in use, or ``None`` when the cache is off."""
    setting = os.environ.get("ADMBJAX_COMPILATION_CACHE", "").strip()
    if setting.lower() in ("0", "off", "false", "no"):
        return None
    if setting and setting.lower() not in ("1", "on", "true", "yes"):
        return Path(setting).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "admbjax" / "jax"


def enable_compilation_cache() -> Path | None:
    """Point JAX's persistent compilation cache at :func:`cache_dir` (unless it is off or the
    user configured a cache directory already). Returns the directory, or ``None``."""
    path = cache_dir()
    if path is None or jax.config.jax_compilation_cache_dir:
        return None if path is None else Path(jax.config.jax_compilation_cache_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
