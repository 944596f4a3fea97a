"""JAX's persistent compilation cache in a per-user directory, opt-in for now.

Compile time is part of the user's wait: with the cache, a second process fitting a model
of the same structure and shape loads the compiled program from disk instead of compiling
(sleepstudy: 19 s -> 4 s). Set ``ADMBJAX_COMPILATION_CACHE=1`` to use
``$XDG_CACHE_HOME/admbjax/jax`` (``~/.cache/admbjax/jax``), or to a directory to put it there.

It is off by default because jaxlib 0.10.2 was seen to abort the process (``Fatal Python
error: Aborted`` inside ``compilation_cache.put_executable_and_time``) while writing the
program of a Student-t fit with adaptive quadrature to the cache: a cache must never crash
a fit. Turn it on by default again once that write is safe (or guarded in a subprocess).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax


def cache_dir() -> Path | None:
    """The cache directory in use, or ``None`` when the cache is off."""
    setting = os.environ.get("ADMBJAX_COMPILATION_CACHE", "")
    if setting.lower() in ("", "0", "off", "false", "no"):
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
