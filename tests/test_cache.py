"""The persistent compilation cache: on by default in a per-user directory, or a named one, or off."""

import jax
import numpy as np

import admbjax
from admbjax import _cache


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


def test_cache_is_enabled_on_import():
    expected = _cache.cache_dir()
    configured = jax.config.jax_compilation_cache_dir
    if expected is None:
        assert not configured
    else:
        assert configured and jax.config.jax_persistent_cache_min_entry_size_bytes == 0


def _fit_spec(model, grouped):
    from admbjax import _fit, _objective

    spec = _objective.Spec.of(model, "REML")
    return (_fit.FitSpec(spec, model.report, model.ranef, 1e-6, 100, closed_form=model.closed_form), None,
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
    code = ("import numpy as np; from admbjax import _cache; f = _cache.load_executable('test-eigh'); "
            "print(repr(np.asarray(f(np.array([[2.0, 1.0], [1.0, 3.0]]))).tolist()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(eval(proc.stdout.strip()), np.linalg.eigvalsh(a), rtol=1e-12)
