"""Compiled programs on disk, on by default in a per-user directory.

Compile time is part of the user's wait: a second process fitting a model of the same
structure and shape loads the compiled program from disk instead of compiling it. Two
stores share the directory: JAX's persistent compilation cache (any program, found after
tracing it) and admbjax's store of formula fits (found without tracing; see below).
Both are used for admbjax's own compiles only (:func:`jax_cache`): importing admbjax changes
no JAX setting. The directory is ``$XDG_CACHE_HOME/admbjax/jax`` (``~/.cache/admbjax/jax``). ``ADMBJAX_COMPILATION_CACHE``
changes that: ``0`` (or ``off``, ``false``, ``no``) turns it off, a path puts it there.
A directory that cannot be created (a read-only home) turns it off silently. A directory
that exists but cannot be written is not given to JAX, which warns at every failed write;
admbjax's store still loads from it and skips its stores without a word.

It was opt-in at first because jaxlib 0.10.2 aborted a test process twice while writing
a Student-t program with adaptive quadrature to the cache. That was in a process holding
hundreds of live executables (since bounded, ``_fit.MAX_PROGRAMS``); the same fits in
fresh processes with the cache on, repeated, did not abort again.

A stored program is native code that runs unchecked: one flipped byte in it can give wrong
estimates reported as converged, or kill the process (SIGSEGV, SIGILL), and unpickling a
damaged file is unsafe in itself. So each entry of admbjax's store is a regular file::

    b"admbjax compiled program\\n"
    {"format": 1, "jax": ..., "jaxlib": ..., "admbjax": ..., "size": ..., "sha256": ...}\\n
    payload: pickle of serialize_executable.serialize(executable)

and it is used only when the magic line, the format, the three versions, the payload's size
and its SHA-256 all match; only then is the payload unpickled. Anything else where an
entry should be (other versions, damage, a truncated or empty file, a directory, FIFO,
symlink, socket or device) is a cache miss: it is removed, without following links or
opening anything but a regular file (opening a FIFO blocks), and the program is compiled
and stored afresh. A store writes a temporary file next to the entry and renames it onto
the entry, so a reader sees the old entry or the new one, never part of one; temporary
files that a killed process left behind are removed by later stores. The checksum guards
against damage, not against someone who can write to the directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import pickle
import shutil
import stat
import tempfile
import time
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


def usable_cache_dir() -> Path | None:
    """:func:`cache_dir`, created if need be; ``None`` where the cache is off or the directory
    cannot be created or written (a read-only home: run without the cache rather than fail;
    JAX would warn at every write it fails)."""
    path = cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if _writable(path) else None


#: JAX's settings for its persistent cache inside :func:`jax_cache`: every program is stored.
_JAX_CACHE_SETTINGS = {"jax_persistent_cache_min_compile_time_secs": 0.0,
                       "jax_persistent_cache_min_entry_size_bytes": 0}


@contextlib.contextmanager
def jax_cache():
    """Compile inside with JAX's persistent compilation cache in :func:`usable_cache_dir`,
    storing every program; outside, JAX's settings are the caller's again.

    Nothing changes where the caller configured a cache directory of their own (admbjax's
    programs then go there) or where admbjax's cache is off. Otherwise the directory and the
    thresholds are set for the duration of the compile and restored after it, and JAX's
    cache object, which it creates once per process on first use, is reset, so that the
    caller's own programs never go to admbjax's directory. The settings are process-wide
    while they last: a program another thread compiles at the same moment may be stored too.
    """
    path = None if jax.config.jax_compilation_cache_dir else usable_cache_dir()
    if path is None:
        yield
        return
    from jax.experimental.compilation_cache import compilation_cache

    saved = {name: getattr(jax.config, name) for name in _JAX_CACHE_SETTINGS}
    jax.config.update("jax_compilation_cache_dir", str(path))
    for name, value in _JAX_CACHE_SETTINGS.items():
        jax.config.update(name, value)
    try:
        yield
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        for name, value in saved.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()


def _writable(directory: Path) -> bool:
    """Whether a file can be created in ``directory`` (tried: permission bits say nothing
    about a read-only file system, or to root)."""
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".probe.", suffix=TEMP_SUFFIX)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return True


# ---------------------------------------------------------------- compiled executables
#
# JAX looks a program up in its persistent cache only after tracing it, and tracing a fit
# takes longer than loading it (sleepstudy: 0.8 s against 0.16 s). So admbjax also stores
# each compiled fit under a key made from the fit's static description, and a new process
# loads it without tracing. A key exists only where every function of the fit says what it
# is (``admbjax_key``, set by the formula front end); hand-written models are traced.

EXECUTABLES = "executables"
MAGIC = b"admbjax compiled program\n"
FORMAT = 1
TEMP_SUFFIX = ".tmp"
#: A temporary file older than this was left by a process that died while storing.
STALE_TEMP_SECONDS = 3600.0


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


def _header(payload: bytes) -> dict:
    """The header of an entry holding ``payload``: what it must say for the entry to be used."""
    import jaxlib

    from . import __version__  # at call time: the package has finished importing by then

    return {"format": FORMAT, "jax": jax.__version__, "jaxlib": jaxlib.__version__, "admbjax": __version__,
            "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}


def _discard(path: Path) -> None:
    """Remove whatever is at ``path`` (a directory with its contents; a link, not its
    target); a failure (a read-only directory) leaves it."""
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def _read_entry(path: Path) -> bytes | None:
    """The payload of the entry at ``path``; ``None`` where there is none, and where it is
    not a regular file or fails a check of its header (it is then removed)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            _discard(path)
            return None
        # should something else have taken the file's place since: no following a link,
        # no waiting for a FIFO's writer
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # absent, or unreadable: a miss
        return None
    try:
        with os.fdopen(fd, "rb") as file:
            data = file.read() if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        header, _, payload = data[len(MAGIC):].partition(b"\n")
        fields = json.loads(header) if data.startswith(MAGIC) else None
    except Exception:  # unreadable, or a header that is not JSON
        fields, payload = None, b""
    if fields != _header(payload):
        _discard(path)
        return None
    return payload


def load_executable(key: str | None):
    """The compiled program stored under ``key``, or ``None`` (absent, cache off, or an
    entry that fails its checks: removed, so that the caller stores a new one)."""
    path = None if key is None else _path(key)
    if path is None or not _kernels_ready():
        return None
    payload = _read_entry(path)
    if payload is None:
        return None
    try:
        return serialize_executable.deserialize_and_load(*pickle.loads(payload))
    except Exception:  # an entry this jaxlib cannot load is a cache miss, never an error
        _discard(path)
        return None


def drop_executable(key: str | None) -> None:
    """Remove the program stored under ``key``, if any."""
    path = None if key is None else _path(key)
    if path is not None:
        _discard(path)


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


def _remove_stale_temps(directory: Path) -> None:
    """Remove temporary files that processes killed while storing left in ``directory``."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.name.endswith(TEMP_SUFFIX) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    _discard(Path(entry.path))


def store_executable(key: str | None, executable) -> None:
    """Store a compiled program under ``key``, atomically (a temporary file renamed onto the
    entry); a failure (a read-only directory) only skips the store, and leaves no file."""
    path = None if key is None else _path(key)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = pickle.dumps(serialize_executable.serialize(executable))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TEMP_SUFFIX)
    except Exception:
        return
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o644)  # mkstemp's 0o600 would hide it from a shared cache
            file.write(MAGIC + json.dumps(_header(payload)).encode() + b"\n" + payload)
        try:
            os.replace(tmp, path)
        except IsADirectoryError:  # a directory where the entry should be
            _discard(path)
            os.replace(tmp, path)
    except Exception:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return
    _remove_stale_temps(path.parent)
