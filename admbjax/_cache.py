"""Compiled programs on disk, on by default in a per-user directory.

Compile time is part of the user's wait: a second process fitting a model of the same
structure and shape loads the compiled program from disk instead of compiling it. Two
stores share the directory: JAX's persistent compilation cache (any program, found after
tracing it) and admbjax's store of formula fits (found without tracing; see below).
sleepstudy from the command line: 2.7 s cold, 1.2 s warm (session 4).
The directory is ``$XDG_CACHE_HOME/admbjax/jax`` (``~/.cache/admbjax/jax``). ``ADMBJAX_COMPILATION_CACHE``
changes that: ``0`` (or ``off``, ``false``, ``no``) turns it off, a path puts it there.
A directory that cannot be created (a read-only home) turns it off silently.

It was opt-in at first because jaxlib 0.10.2 aborted a test process twice while writing
a Student-t program with adaptive quadrature to the cache. That was in a process holding
hundreds of live executables (since bounded, ``_fit.MAX_PROGRAMS``); the same fits in
fresh processes with the cache on, repeated, did not abort again (session 3).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import pickle
from pathlib import Path

import jax
from jax.experimental import serialize_executable


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


# ---------------------------------------------------------------- compiled executables
#
# JAX looks a program up in its persistent cache only after tracing it, and tracing a fit
# takes longer than loading it (sleepstudy: 0.8 s against 0.16 s). So admbjax also stores
# each compiled fit under a key made from the fit's static description, and a new process
# loads it without tracing. A key exists only where every function of the fit says what it
# is (``admbjax_key``, set by the formula front end); hand-written models are traced.

EXECUTABLES = "executables"


def stable_key(obj) -> str | None:
    """A string that identifies ``obj`` across processes, or ``None`` where it cannot.

    Functions need an ``admbjax_key`` attribute; dataclasses and tuples are taken apart;
    numbers, strings and ``None`` stand for themselves.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return repr(obj)
    if callable(obj) and hasattr(obj, "admbjax_key") and not dataclasses.is_dataclass(obj):
        return f"<{obj.admbjax_key}>"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        parts = [stable_key(getattr(obj, f.name)) for f in dataclasses.fields(obj)]
        return None if None in parts else f"{type(obj).__qualname__}({', '.join(parts)})"
    if isinstance(obj, (tuple, list)):
        parts = [stable_key(a) for a in obj]
        return None if None in parts else f"({', '.join(parts)})"
    if isinstance(obj, jax.tree_util.PyTreeDef):
        return str(obj)
    module, name = getattr(obj, "__module__", None) or "", getattr(obj, "__qualname__", None) or "<locals>"
    if callable(obj) and module.startswith("admbjax.") and "<locals>" not in name:
        return f"{module}.{name}"
    return None


@functools.lru_cache(maxsize=1)
def _environment() -> str:
    """What else a compiled program depends on: versions, backend, and admbjax's own code."""
    import jaxlib

    source = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        source.update(path.read_bytes())
    return (f"jax {jax.__version__} jaxlib {jaxlib.__version__} {jax.default_backend()} "
            f"{jax.devices()[0].device_kind} x64 {jax.config.jax_enable_x64} admbjax {source.hexdigest()}")


def _path(key: str) -> Path | None:
    base = cache_dir()
    if base is None:
        return None
    return base / EXECUTABLES / (hashlib.sha256((_environment() + key).encode()).hexdigest() + ".pkl")


@functools.cache
def _kernels_ready() -> bool:
    """Set up the kernels a compiled program may call outside XLA's own code.

    Lowering a call to LAPACK (``eigh`` on CPU) is what points jaxlib's LAPACK kernels at
    their implementation; a stored program is loaded without lowering, so in a new process
    its first LAPACK call would crash the process. ``jax.export`` does the same set-up when it
    loads a program. Where that hook is missing, stored programs are not used.
    """
    try:
        from jax._src.lax import linalg

        linalg.initialize_lapack()
        return True
    except Exception:
        return False


def load_executable(key: str | None):
    """The compiled program stored under ``key``, or ``None`` (absent, cache off, unreadable)."""
    path = None if key is None else _path(key)
    if path is None or not path.exists() or not _kernels_ready():
        return None
    try:
        payload, in_tree, out_tree = pickle.loads(path.read_bytes())
        return serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # a stale or damaged entry is a cache miss, never an error
        path.unlink(missing_ok=True)
        return None


def drop_executable(key: str | None) -> None:
    """Remove the program stored under ``key``, if any."""
    path = None if key is None else _path(key)
    if path is not None:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def jax_cache_off(off: bool):
    """Compile inside with JAX's persistent cache off when ``off``: for a program this store
    will keep. jaxlib 0.10.2 serialises a program that it loaded from its own cache without
    its code ("Function ... not found" when it runs in the next process), so such a program
    could never be stored, and after an upgrade of admbjax that left it unchanged every run
    would trace it again."""
    enabled = jax.config.jax_enable_compilation_cache
    if off:
        jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)


def store_executable(key: str | None, executable) -> None:
    """Store a compiled program under ``key`` (atomically); a failure only skips the store."""
    path = None if key is None else _path(key)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = pickle.dumps(serialize_executable.serialize(executable))
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    except Exception:
        pass
