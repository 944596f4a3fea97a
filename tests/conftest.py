"""Shared fixtures: compiled programs are cached per model and shape, so fits are shared."""

import importlib.util
import json
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "reference"
sys.path.insert(0, str(ROOT / "models"))
# Tests compile every program once per run and share them in memory; the on-disk cache would
# only add files shared with any other process on the machine (it is tested in test_cache).
os.environ.setdefault("ADMBJAX_COMPILATION_CACHE", "0")

import jax  # noqa: E402

# The tests' own JAX computations (reference derivatives, hand-built arrays) need float64.
# admbjax itself changes no JAX setting (its calls are scoped: admbjax._scope); that is
# tested in fresh processes (test_scoped_config.py), where nothing like this line runs.
jax.config.update("jax_enable_x64", True)

import admbjax  # noqa: E402,F401


def load_model(name: str):
    """Import ``models/<name>.py`` as a module, as a user would run it."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "models" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli_fit_json(tmp_path, *args):
    """Run ``admbjax fit ARGS --json OUT`` in-process; returns (exit status, the JSON written)."""
    from admbjax import cli

    out = tmp_path / "fit.json"
    rc = cli.main(["fit", *args, "--json", str(out)])
    return rc, json.loads(out.read_text())


def reference(name: str) -> dict:
    """A reference JSON from tests/reference (provenance in its README)."""
    return json.loads((REFERENCE / f"{name}.json").read_text())


@pytest.fixture(scope="session")
def sleepstudy():
    return load_model("sleepstudy_lmm")


@pytest.fixture(scope="session")
def sleepstudy_t():
    return load_model("sleepstudy_t_lmm")


@pytest.fixture(scope="session")
def sleepstudy_fits(sleepstudy):
    model, data = sleepstudy.build()
    return {m: admbjax.fit(model, data, m) for m in ("REML", "ML")}


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Free each module's compiled programs when it ends (programs are shared within a module
    and by the session-scoped fits; a long run that kept hundreds of executables alive
    aborted inside XLA)."""
    yield
    import jax

    from admbjax import _fit

    _fit._PROGRAMS.clear()
    jax.clear_caches()
