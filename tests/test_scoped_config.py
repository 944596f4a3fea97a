"""Importing and using admbjax leaves JAX's global configuration as the caller set it.

Checked in fresh processes, since this test process has run admbjax already: a user's
float32 JAX code before and after an admbjax fit runs in float32, the fit itself runs in
float64 (lme4's REML criterion to 1e-9), and JAX's compilation-cache settings are the
caller's again after the fit, while admbjax's own programs did go to admbjax's cache.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp

def settings():
    return [bool(jax.config.jax_enable_x64), jax.config.jax_compilation_cache_dir,
            jax.config.jax_persistent_cache_min_compile_time_secs,
            jax.config.jax_persistent_cache_min_entry_size_bytes]

user = jax.jit(lambda a: jnp.sum(a / 3.0))
third = jnp.ones(3) / 3.0
before = settings()
import admbjax
after_import = settings()
fit = admbjax.fit_formula("Reaction ~ Days + (Days | Subject)", "sleepstudy")
sys.path.insert(0, sys.argv[1])
import sleepstudy_lmm                      # a hand-written model: its program goes to JAX's cache
hand = admbjax.fit(*sleepstudy_lmm.build(), method="ML")
after_fit = settings()

def user_after(a):
    return jnp.cumsum(a * 7.0)

again = jax.jit(user_after)(jnp.arange(4.0))
print(json.dumps({"before": before, "after_import": after_import, "after_fit": after_fit,
                  "dtypes": [str(third.dtype), str(user(third).dtype), str(again.dtype), str(jnp.zeros(2).dtype)],
                  "criterion": float(fit.criterion), "beta_dtype": str(fit.beta.dtype),
                  "hand_criterion": float(hand.criterion)}))
"""


def _run(env_extra, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **env_extra)
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT / "models")], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cache", ["on", "off"])
def test_a_fit_leaves_float32_user_code_and_jax_settings_alone(tmp_path, cache):
    directory = tmp_path / "cache"
    out = _run({"ADMBJAX_COMPILATION_CACHE": str(directory) if cache == "on" else "0"}, tmp_path)
    assert out["before"] == out["after_import"] == out["after_fit"]
    assert out["before"][0] is False                          # JAX's default: 32-bit
    assert out["dtypes"] == ["float32"] * 4
    assert out["beta_dtype"] == "float64"
    assert out["criterion"] == pytest.approx(1743.62827195995, rel=1e-9)   # lme4: tests/reference/sleepstudy.json
    assert out["hand_criterion"] == pytest.approx(1751.93934448899, rel=1e-9)   # lme4 ML: sleepstudy.json
    stored = [p.name for p in directory.rglob("*") if p.is_file()] if directory.exists() else []
    if cache == "on":   # admbjax's programs went to its cache (its own store, and JAX's), the user's did not
        assert any(name.endswith(".pkl") for name in stored) and any(name.startswith("jit_") for name in stored)
        assert not [name for name in stored if "user_after" in name]
    else:
        assert not stored


def test_a_cache_the_user_configured_is_theirs_and_kept(tmp_path):
    script = SCRIPT.replace("before = settings()", "jax.config.update('jax_compilation_cache_dir', %r)\nbefore = settings()"
                            % str(tmp_path / "mine"))
    env = dict(os.environ, JAX_PLATFORMS="cpu", ADMBJAX_COMPILATION_CACHE=str(tmp_path / "admbjax"))
    proc = subprocess.run([sys.executable, "-c", script, str(ROOT / "models")], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"] == out["after_fit"] and out["before"][1] == str(tmp_path / "mine")
    assert out["dtypes"] == ["float32"] * 4
