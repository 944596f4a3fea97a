"""The persistent compilation cache: on by default in a per-user directory, or a named one, or off."""

import jax

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
