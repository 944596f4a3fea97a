"""The persistent compilation cache: on by default in a per-user directory, or a named one, or off;
and the store of compiled programs, where a damaged or odd entry is a miss, never a wrong fit."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
import warnings
from collections import OrderedDict

import jax
import numpy as np
import pytest

import admbjax
from admbjax import _cache, _fit


def test_cache_directory_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("ADMBJAX_COMPILATION_CACHE", raising=False)
    assert _cache.cache_dir() == tmp_path / "admbjax" / "jax"          # on by default
    monkeypatch.setenv("ADMBJAX_COMPILATION_CACHE", "0")
    assert _cache.cache_dir() is None
    monkeypatch.setenv("ADMBJAX_COMPILATION_CACHE", "1")
    assert _cache.cache_dir() == tmp_path / "admbjax" / "jax"
    monkeypatch.setenv("ADMBJAX_COMPILATION_CACHE", "off")
    assert _cache.cache_dir() is None
    monkeypatch.setenv("ADMBJAX_COMPILATION_CACHE", str(tmp_path / "elsewhere"))
    assert _cache.cache_dir() == tmp_path / "elsewhere"


def _fit_spec(model, grouped):
    from admbjax import _fit, _options

    fs = _fit.FitSpec.of(model, "REML", _options.Options(gtol=1e-6))
    spec = fs.spec
    return (fs, None,
            _fit._shapes((spec.x0(model), spec.initial_mode(model, grouped.shape[0]), grouped.tree())))


def test_formula_fits_have_a_stable_key_and_hand_written_ones_none():
    from conftest import load_model

    formula = "Reaction ~ Days + (Days | Subject)"
    one = _cache.stable_key(_fit_spec(*admbjax.formula_model(formula, "sleepstudy")[:2]))
    two = _cache.stable_key(_fit_spec(*admbjax.formula_model(formula, "sleepstudy")[:2]))
    other = _cache.stable_key(_fit_spec(*admbjax.formula_model("Reaction ~ Days + (1 | Subject)", "sleepstudy")[:2]))
    assert one is not None and one == two and other != one
    hand_written = load_model("sleepstudy_lmm").build()
    assert _cache.stable_key(_fit_spec(*hand_written)) is None


def test_a_stored_program_is_loaded_without_tracing_and_gives_the_same_fit(monkeypatch, tmp_path):
    from admbjax import _fit

    monkeypatch.setenv("ADMBJAX_COMPILATION_CACHE", str(tmp_path))
    monkeypatch.setattr(_fit, "_PROGRAMS", type(_fit._PROGRAMS)())
    formula = "Reaction ~ Days + (1 | Subject)"
    first = admbjax.fit_formula(formula, "sleepstudy")
    assert len(list((tmp_path / _cache.EXECUTABLES).glob("*.pkl"))) == 1
    monkeypatch.setattr(_fit, "_PROGRAMS", type(_fit._PROGRAMS)())
    monkeypatch.setattr(_fit.jax, "jit", None)           # no tracing: the program must come from disk
    again = admbjax.fit_formula(formula, "sleepstudy")
    assert again.criterion == first.criterion
    np.testing.assert_array_equal(again.x, first.x)
    np.testing.assert_array_equal(again.x_cov, first.x_cov)


def test_functions_without_a_module_or_name_have_no_key():
    import functools

    scope = {}
    exec("def nll(theta, beta, u, data):\n    return 0.0\n", scope)    # __module__ is None
    assert _cache.stable_key(scope["nll"]) is None
    assert _cache.stable_key(functools.partial(print)) is None    # no __qualname__
    assert _cache.stable_key((1, "a", None)) == "(1, 'a', None)"


def test_a_stored_program_that_calls_lapack_runs_in_a_new_process(monkeypatch, tmp_path):
    """A program with a LAPACK call (``eigh`` on CPU) stored by one process runs in the next:
    loading it must set up jaxlib's LAPACK kernels, which only lowering does otherwise (the
    process crashed with SIGSEGV before)."""
    import subprocess
    import sys

    import jax.numpy as jnp

    monkeypatch.setenv("ADMBJAX_COMPILATION_CACHE", str(tmp_path))
    a = np.array([[2.0, 1.0], [1.0, 3.0]])
    program = jax.jit(lambda m: jnp.linalg.eigh(m)[0]).lower(a).compile()
    _cache.store_executable("test-eigh", program)
    code = ("import numpy as np; from admbjax import _cache, _scope\nwith _scope.scope():\n"
            "    f = _cache.load_executable('test-eigh')\n"
            "    print(repr(np.asarray(f(np.array([[2.0, 1.0], [1.0, 3.0]]))).tolist()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(eval(proc.stdout.strip()), np.linalg.eigvalsh(a), rtol=1e-12)


# ---------------------------------------------------------------- damaged or odd entries
#
# A stored program is native code: run damaged, it can give wrong estimates reported as
# converged, or kill the process. Every kind of damage must be a cache miss that gives
# exactly a fresh fit's criterion and leaves a good entry in its place.

FORMULA = "Reaction ~ Days + (1 | Subject)"      # quick to compile; lme4's REML criterion 1786.465


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A good entry (its file name and bytes) and the criterion of the fresh fit that stored it."""
    directory = tmp_path_factory.mktemp("stored")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADMBJAX_COMPILATION_CACHE", str(directory))
        mp.setattr(_fit, "_PROGRAMS", OrderedDict())
        fresh = admbjax.fit_formula(FORMULA, "sleepstudy")
    [entry] = (directory / _cache.EXECUTABLES).iterdir()
    np.testing.assert_allclose(fresh.criterion, 1786.465, atol=1e-3)
    return entry.name, entry.read_bytes(), fresh.criterion


def _with_header(good: bytes, **changes) -> bytes:
    """``good`` with fields of its header changed (its checksum still right)."""
    header, _, payload = good[len(_cache.MAGIC):].partition(b"\n")
    return _cache.MAGIC + json.dumps({**json.loads(header), **changes}).encode() + b"\n" + payload


def _fit_after(monkeypatch, tmp_path, stored, damage):
    """Fit with a cache at ``tmp_path`` whose entry for the fit is ``damage(entry)``.

    Returns the entry's path, the fit, what each disk lookup returned and the warnings."""
    name, good, _ = stored
    monkeypatch.setenv("ADMBJAX_COMPILATION_CACHE", str(tmp_path))
    entry = tmp_path / _cache.EXECUTABLES / name
    entry.parent.mkdir()
    entry.write_bytes(good)
    damage(entry)
    loads, load = [], _cache.load_executable
    monkeypatch.setattr(_cache, "load_executable", lambda key: loads.append(load(key)) or loads[-1])
    monkeypatch.setattr(_fit, "_PROGRAMS", OrderedDict())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = admbjax.fit_formula(FORMULA, "sleepstudy")
    monkeypatch.setattr(_cache, "load_executable", load)
    return entry, result, loads, caught


def _assert_rebuilt(monkeypatch, entry, criterion):
    """A regular file with a good header is at ``entry``, and a fit loads it without tracing."""
    assert stat.S_ISREG(os.lstat(entry).st_mode) and _cache._read_entry(entry) is not None
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]       # no temporary files
    with monkeypatch.context() as mp:
        mp.setattr(_fit, "_PROGRAMS", OrderedDict())
        mp.setattr(_fit.jax, "jit", None)                  # no tracing: the program must come from disk
        assert admbjax.fit_formula(FORMULA, "sleepstudy").criterion == criterion


def _write(data):
    return lambda entry: entry.write_bytes(data)


def _directory(entry):
    entry.unlink()
    entry.mkdir()
    (entry / "inside").write_bytes(b"x")


def _fifo(entry):
    entry.unlink()
    os.mkfifo(entry)


def _symlink_to_a_good_entry(entry):
    elsewhere = entry.parent.parent / "elsewhere.pkl"
    os.replace(entry, elsewhere)
    entry.symlink_to(elsewhere)


def _dangling_symlink(entry):
    entry.unlink()
    entry.symlink_to(entry.parent / "nothing.pkl")


DAMAGE = {
    "truncated": lambda entry: entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2]),
    "empty": _write(b""),
    "garbage": lambda entry: entry.write_bytes(np.random.default_rng(0).bytes(entry.stat().st_size)),
    "garbage after the magic line": lambda entry: entry.write_bytes(
        _cache.MAGIC + np.random.default_rng(1).bytes(entry.stat().st_size)),
    "no header (a bare pickle)": lambda entry: entry.write_bytes(entry.read_bytes().partition(b"}\n")[2]),
    "another jaxlib": lambda entry: entry.write_bytes(_with_header(entry.read_bytes(), jaxlib="0.4.30")),
    "another admbjax": lambda entry: entry.write_bytes(_with_header(entry.read_bytes(), admbjax="0.0.1")),
    "another format": lambda entry: entry.write_bytes(_with_header(entry.read_bytes(), format=0)),
    "a directory": _directory,
    "a FIFO": _fifo,
    "a symlink to a good entry": _symlink_to_a_good_entry,
    "a dangling symlink": _dangling_symlink,
}


def test_the_header_helper_changes_only_what_it_is_asked_to(stored):
    _, good, _ = stored
    assert _with_header(good) == good
    assert _with_header(good, jaxlib="0.4.30") != good


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_or_odd_entry_is_a_miss_and_is_rebuilt(monkeypatch, tmp_path, stored, kind):
    def hung(signum, frame):     # pytest.fail: not an Exception, which the code under test may catch
        pytest.fail("the fit blocked for 30 s (it opened a FIFO?)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        entry, result, loads, caught = _fit_after(monkeypatch, tmp_path, stored, DAMAGE[kind])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert loads == [None]                                     # a miss, not a damaged program run
    assert result.criterion == stored[2] and result.converged
    assert not caught, [str(w.message) for w in caught]
    _assert_rebuilt(monkeypatch, entry, stored[2])
    if kind == "a symlink to a good entry":                   # the link went, not what it named
        assert (tmp_path / "elsewhere.pkl").read_bytes() == stored[1]


FLIPS = r"""
import json
from collections import OrderedDict
import jax
import admbjax
from admbjax import _cache, _fit


def flipped(good, offset):
    damaged = bytearray(good)
    damaged[offset] ^= 0xFF
    return bytes(damaged)


def offsets(good, fractions):
    start = good.index(b"\n", len(_cache.MAGIC)) + 1           # where the payload starts
    found = {"magic": 3, "header": start - 20, "payload start": start}
    found.update({f"payload {f}": start + int(f * (len(good) - start)) for f in fractions})
    return found | {"last byte": len(good) - 1}


# a small program, flipped every few hundred bytes: each must be a miss, and removed
_cache.store_executable("flips", jax.jit(lambda x: x * 2.0 + 1.0).lower(1.0).compile())
[entry] = (_cache.cache_dir() / _cache.EXECUTABLES).iterdir()
good = entry.read_bytes()
for name, offset in offsets(good, [i / 64 for i in range(1, 64)]).items():
    entry.write_bytes(flipped(good, offset))
    exe = _cache.load_executable("flips")
    print(json.dumps({"program": "x * 2 + 1", "damage": name, "offset": offset, "loaded": exe is not None,
                      "removed": not entry.exists()}), flush=True)

# a formula fit: each is a miss, gives the fresh fit's criterion, and stores a good entry
formula = "Reaction ~ Days + (1 | Subject)"
fresh = admbjax.fit_formula(formula, "sleepstudy")
[entry] = (_cache.cache_dir() / _cache.EXECUTABLES).iterdir()
good = entry.read_bytes()
load = _cache.load_executable
for name, offset in offsets(good, [0.5, 0.67, 0.8]).items():
    entry.write_bytes(flipped(good, offset))
    _fit._PROGRAMS = OrderedDict()
    loads = []
    _cache.load_executable = lambda key: loads.append((key, load(key))) or loads[-1][1]
    try:
        criterion = admbjax.fit_formula(formula, "sleepstudy").criterion
    except Exception as err:
        criterion = repr(err)
    _cache.load_executable = load
    print(json.dumps({"program": formula, "damage": name, "offset": offset, "criterion": criterion,
                      "fresh": fresh.criterion, "loaded": [exe is not None for _, exe in loads],
                      "rebuilt": [load(key) is not None for key, _ in loads]}), flush=True)
"""


def test_a_flipped_byte_anywhere_is_a_miss_and_the_entry_is_rebuilt(tmp_path):
    """One byte flipped in the header or anywhere in the program (without a checksum, some
    gave wrong estimates and some killed the process: hence a process of its own)."""
    env = {**os.environ, "ADMBJAX_COMPILATION_CACHE": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-W", "error", "-c", FLIPS], env=env, capture_output=True,
                          text=True, timeout=300)
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, (results[-1:], proc.stderr[-3000:])
    small, fits = [r for r in results if "criterion" not in r], [r for r in results if "criterion" in r]
    assert len(small) == 67 and len(fits) == 7
    for r in small:
        assert not r["loaded"] and r["removed"], r
    for r in fits:
        assert r["criterion"] == r["fresh"] and r["loaded"] == [False] and r["rebuilt"] == [True], r


# ---------------------------------------------------------------- stores that fail

def _refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize("fails", ["tempfile.mkstemp", "os.replace"])
def test_a_store_that_fails_is_skipped_without_a_warning_or_a_file(monkeypatch, tmp_path, stored, fails):
    """A cache that cannot be written (tests run as root, which chmod does not stop: the
    calls that write fail instead)."""
    module, name = fails.split(".")
    monkeypatch.setenv("ADMBJAX_COMPILATION_CACHE", str(tmp_path))
    monkeypatch.setattr(_fit, "_PROGRAMS", OrderedDict())
    monkeypatch.setattr({"tempfile": _cache.tempfile, "os": os}[module], name, _refuse)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = admbjax.fit_formula(FORMULA, "sleepstudy")
    assert not caught, [str(w.message) for w in caught]
    assert result.criterion == stored[2]
    assert list((tmp_path / _cache.EXECUTABLES).iterdir()) == []          # no entry, no temporary file


def test_a_damaged_entry_in_a_cache_that_cannot_change_is_a_quiet_miss(monkeypatch, tmp_path, stored):
    """Neither removing the damaged entry nor storing a new one works: the fit is still right,
    with no warning, and the entry is as it was."""
    def read_only(entry):
        entry.write_bytes(b"garbage")
        for module, name in ((os, "unlink"), (_cache.shutil, "rmtree"), (os, "replace"),
                             (_cache.tempfile, "mkstemp")):
            monkeypatch.setattr(module, name, _refuse)

    entry, result, loads, caught = _fit_after(monkeypatch, tmp_path, stored, read_only)
    assert loads == [None] and result.criterion == stored[2]
    assert not caught, [str(w.message) for w in caught]
    assert entry.read_bytes() == b"garbage"


#: Run as root, a child that cannot write to a read-only directory: the capabilities that let
#: root write there anyway (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) leave its bounding set
#: before it starts Python again (exit status 99: this process may not drop them).
AS_A_USER = ("import ctypes, os, sys\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "if any(libc.prctl(24, cap, 0, 0, 0) for cap in (1, 2)): sys.exit(99)\n"  # PR_CAPBSET_DROP
             "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n")


READ_ONLY = r"""
import jax, jax.numpy as jnp
import admbjax
assert not jax.config.jax_compilation_cache_dir, jax.config.jax_compilation_cache_dir
print(float(jax.jit(lambda x: jnp.sin(x) * 2.0)(1.0)))     # a program for JAX's own cache
print(admbjax.fit_formula("Reaction ~ Days + (1 | Subject)", "sleepstudy").criterion)
"""


def test_a_read_only_cache_directory_gives_no_warnings(tmp_path, stored):
    """A real read-only directory: admbjax does not point JAX's cache at it (JAX warns at every
    write it fails), and its own store is skipped; warnings are errors in the child."""
    cache = tmp_path / "read-only"
    (cache / _cache.EXECUTABLES).mkdir(parents=True)
    for path in (cache / _cache.EXECUTABLES, cache):
        path.chmod(0o555)
    env = {**os.environ, "ADMBJAX_COMPILATION_CACHE": str(cache)}
    command = [sys.executable, "-W", "error", "-c", READ_ONLY]
    if os.geteuid() == 0:
        command = [sys.executable, "-c", AS_A_USER, *command[1:]]
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    finally:
        for path in (cache, cache / _cache.EXECUTABLES):
            path.chmod(0o755)
    if proc.returncode == 99:
        pytest.skip("cannot drop root's permission to write to a read-only directory here")
    assert proc.returncode == 0 and not proc.stderr, proc.stderr[-3000:]
    assert float(proc.stdout.split()[-1]) == stored[2]
    assert list(cache.rglob("*")) == [cache / _cache.EXECUTABLES]


def test_jax_cache_leaves_jax_alone_where_it_cannot_write(monkeypatch, tmp_path):
    if jax.config.jax_compilation_cache_dir:
        pytest.skip("JAX's cache is configured in this process")
    monkeypatch.setenv("ADMBJAX_COMPILATION_CACHE", str(tmp_path))
    assert _cache._writable(tmp_path)
    monkeypatch.setattr(_cache.tempfile, "mkstemp", _refuse)
    assert _cache._writable(tmp_path) is False
    assert _cache.usable_cache_dir() is None
    with _cache.jax_cache():
        assert not jax.config.jax_compilation_cache_dir


def test_jax_cache_is_set_inside_and_restored_after(monkeypatch, tmp_path):
    if jax.config.jax_compilation_cache_dir:
        pytest.skip("JAX's cache is configured in this process")
    monkeypatch.setenv("ADMBJAX_COMPILATION_CACHE", str(tmp_path))
    before = jax.config.jax_persistent_cache_min_compile_time_secs
    with _cache.jax_cache():
        assert jax.config.jax_compilation_cache_dir == str(tmp_path)
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert not jax.config.jax_compilation_cache_dir
    assert jax.config.jax_persistent_cache_min_compile_time_secs == before


# ---------------------------------------------------------------- the entry format

def _tiny_program():
    return jax.jit(lambda x: x * 2.0 + 1.0).lower(1.0).compile()


def test_an_entry_is_a_header_with_versions_and_a_checksum_then_the_payload(monkeypatch, tmp_path):
    import hashlib

    import jaxlib

    monkeypatch.setenv("ADMBJAX_COMPILATION_CACHE", str(tmp_path))
    _cache.store_executable("test-format", _tiny_program())
    [entry] = (tmp_path / _cache.EXECUTABLES).iterdir()
    data = entry.read_bytes()
    assert data.startswith(_cache.MAGIC)
    header, _, payload = data[len(_cache.MAGIC):].partition(b"\n")
    assert json.loads(header) == {"format": _cache.FORMAT, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                                  "admbjax": admbjax.__version__, "size": len(payload),
                                  "sha256": hashlib.sha256(payload).hexdigest()}
    assert float(_cache.load_executable("test-format")(3.0)) == 7.0


def test_a_store_removes_temporary_files_left_by_killed_processes(monkeypatch, tmp_path):
    """Old temporary files go; a recent one may be another process's store in progress."""
    monkeypatch.setenv("ADMBJAX_COMPILATION_CACHE", str(tmp_path))
    directory = tmp_path / _cache.EXECUTABLES
    directory.mkdir()
    old, recent, other = directory / "a.pkl.x1y2.tmp", directory / "b.pkl.z3w4.tmp", directory / "notes.txt"
    for path in (old, recent, other):
        path.write_bytes(b"partial")
    hours_ago = time.time() - 2 * _cache.STALE_TEMP_SECONDS
    for path in (old, other):
        os.utime(path, (hours_ago, hours_ago))
    _cache.store_executable("test-temps", _tiny_program())
    assert not old.exists() and recent.exists() and other.exists()
    assert len(list(directory.glob("*.pkl"))) == 1
