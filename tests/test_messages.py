"""Messages name the user's things (issue 11, point 8): columns, rows and subjects, options,
files and encodings; no internal array names, raw RuntimeWarnings or tracebacks."""

import dataclasses
import os
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest

import admbjax
from admbjax import _batch, _fit, _formula, _io, _results, cli

SLEEP = "Reaction ~ Days + (Days | Subject)"
VALID = "gtol, max_iter, closed_form, inner_tol, inner_max_iter, hessian, n_agq, global_mode, optimiser"


@pytest.fixture(scope="module")
def sleep():
    return admbjax.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def by_overflow(sleep):
    """Two replicates of sleepstudy, one with a response so large that its squares overflow."""
    df = sleep.assign(rep=np.where(np.arange(len(sleep)) % 2, "b", "a"))
    df.loc[df.rep == "a", "Reaction"] *= 1e160
    # pytest runs with warnings as errors: a raw numpy RuntimeWarning would fail here
    with pytest.warns(admbjax.AdmbjaxWarning) as caught:
        levels, results = admbjax.fit_formula_by(SLEEP, df, by="rep")
    return levels, results, [str(w.message) for w in caught]


def test_nonfinite_sums_name_the_column_and_the_subjects(by_overflow):
    levels, results, messages = by_overflow
    assert levels == ["a", "b"] and results[0] is None and results[1].converged
    [message] = messages
    assert message.startswith("level 'a' of 'rep' was not fitted: the per-subject sums of squares and products of "
                              "column 'Reaction' are not finite")
    assert "for 18 subject(s) of 'Subject': 308, 309, 310, 330," in message and "`rr`" not in message


def test_nonfinite_rows_name_the_columns_and_rows(sleep):
    model, data, _ = admbjax.formula_model(SLEEP, sleep, sufficient=False)
    y = data.arrays["y"].copy()
    y[np.isin(data.rows, [7, 12])] = np.nan
    bad = dataclasses.replace(data, arrays=dict(data.arrays, y=y))
    assert _batch._nonfinite(bad, model) == "column 'Reaction' has NaN or inf in 2 row(s) (0-based): 7, 12"
    X = data.arrays["X"].copy()
    X[data.rows == 3, 1] = np.inf
    bad = dataclasses.replace(data, arrays=dict(data.arrays, X=X))
    assert _batch._nonfinite(bad, model) == "fixed-effect column(s) 'Days' has NaN or inf in 1 row(s) (0-based): 3"
    # a hand-written model's arrays are the user's own names
    hand = dataclasses.replace(model, formula=None)
    assert _batch._nonfinite(bad, hand).startswith("`arrays['X']` has NaN or inf in 1 row(s)")


def test_edge_values_raise_no_runtime_warnings(by_overflow):
    """A boundary SD (confint on the log scale up to inf) and fitted probabilities of exactly
    0 or 1 (Pearson residuals +-inf, as R gives them): no raw numpy warning."""
    fit = by_overflow[1][1]
    sd = np.asarray(fit.report["sd"]) * np.array([1e-300, 1.0])
    ci = dataclasses.replace(fit, report=dict(fit.report, sd=sd)).confint()
    assert ci.loc["Subject.sd_(Intercept)", "97.5 %"] == np.inf
    d = types.SimpleNamespace(y=np.array([0.0, 1.0, 2.0]), X=np.array([[800.0], [-800.0], [0.0]]), Z=np.zeros((3, 1)),
                              groups=pd.Categorical(["a", "a", "b"]), trials=np.array([2.0, 2.0, 2.0]))
    res = types.SimpleNamespace(family="binomial", beta=np.array([1.0]), b=np.zeros((2, 1)), sigma=None)
    np.testing.assert_array_equal(_formula.conditional_residuals(res, d), [-1.0, 0.5, 0.5])
    np.testing.assert_array_equal(_formula.conditional_residuals(res, d, scaled=True)[:2], [-np.inf, np.inf])


def test_a_file_that_is_not_utf8_names_itself_and_the_encoding_option(tmp_path, capsys):
    path = tmp_path / "latin.csv"
    path.write_bytes("y,x,g\n1,2,a\n3,4,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError) as err:
        _io.read_data(str(path))
    assert str(err.value) == (f"data file {str(path)!r} is not UTF-8 (byte 0xe9 at position 19, line 3); pass its "
                              "encoding, e.g. encoding='latin-1' (CLI: --encoding latin-1)")
    assert list(_io.read_data(str(path), encoding="latin-1").g) == ["a", "caf\u00e9"]
    with pytest.raises(ValueError, match="is not UTF-8"):
        admbjax.fit_formula("y ~ x + (1 | g)", str(path))
    with pytest.raises(ValueError, match=r"number of observations \(=2\)"):     # read, then refused
        admbjax.fit_formula("y ~ x + (1 | g)", str(path), encoding="latin-1")
    assert cli.main(["fit", "--data", str(path), "--formula", "y ~ x + (1 | g)"]) == 2
    assert "is not UTF-8 (byte 0xe9 at position 19, line 3)" in capsys.readouterr().err
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfy,x\n1,2\n")                 # UTF-8 with a byte-order mark
    assert list(_io.read_data(str(bom)).columns) == ["y", "x"]


def test_not_positive_definite_says_which_standard_errors_are_missing(by_overflow):
    flags = dict(ok=np.ones(2, bool), inner_converged=np.ones(2, bool), curvature=np.ones(2), grad=1e-8,
                 converged=True, status="converged", hessian_pd=False, singular=False)
    fit = by_overflow[1][1]
    grouped = type("Data", (), {"ids": ("s1", "s2"), "n_subjects": 2})
    finite, nan = np.eye(2), np.full((2, 2), np.nan)
    [msg] = _results._conditions(grouped, **flags, beta_covs=(finite, finite))
    assert msg == ("Hessian of the marginal nll is not positive definite: standard errors of the variance "
                   "parameters unavailable (the fixed-effect standard errors are conditional on them)")
    [msg] = _results._conditions(grouped, **flags, beta_covs=(nan, finite))
    assert "standard errors of the fixed effects and the variance parameters unavailable (vcov(full=False)" in msg
    # the summary prints NaN for SEs that are not there, not a number
    gone = dataclasses.replace(fit, beta_cov=nan)
    fixed = gone.summary().split("Fixed effects:")[1].splitlines()[2]
    assert fixed.split()[2:] == ["NaN", "NaN"] and "nan" not in gone.summary()


def test_unknown_options_name_themselves_before_anything_is_compiled(sleep):
    model, data, _ = admbjax.formula_model(SLEEP, sleep)
    df = sleep.assign(rep="a")
    programs = dict(_fit._PROGRAMS)
    calls = {
        "fit": lambda: admbjax.fit(model, data, foo=1),
        "make_objective": lambda: admbjax.make_objective(model, data, foo=1),
        "fit_formula": lambda: admbjax.fit_formula(SLEEP, sleep, foo=1),
        "fit_batch": lambda: admbjax.fit_batch(model, [data], foo=1),
        "fit_formula_by": lambda: admbjax.fit_formula_by(SLEEP, df, by="rep", foo=1),
        "fit_formula_responses": lambda: admbjax.fit_formula_responses(SLEEP, sleep, ["Reaction"], foo=1),
        "bootstrap": lambda: admbjax.bootstrap(SLEEP, sleep, n_boot=2, foo=1),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError) as err:
            call()
        batch = "chunk_size, progress, " if name not in ("fit", "make_objective", "fit_formula") else ""
        assert str(err.value) == f"{name}() got an unknown option 'foo'; valid options: {batch}{VALID}"
    with pytest.raises(TypeError, match=r"fit_formula\(\) got an unknown option 'max_iters' \(did you mean 'max_iter'\?\)"):
        admbjax.fit_formula(SLEEP, sleep, max_iters=5)
    assert dict(_fit._PROGRAMS) == programs


def _shell(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, ADMBJAX_COMPILATION_CACHE="0"))


def test_output_into_a_closed_pipe_ends_quietly():
    fit = f"{sys.executable} -m admbjax fit --data sleepstudy --formula '{SLEEP}'"
    proc = _shell(f"{fit} | head -1")
    assert proc.stdout == "Linear mixed model fit by REML\n" and proc.stderr == ""
    # a reader gone before anything is written: the status of a shell tool that SIGPIPE ends
    proc = _shell(f"{fit} | true; echo ${{PIPESTATUS[0]}}")
    assert proc.stdout == f"{cli.BROKEN_PIPE_STATUS}\n" and proc.stderr == ""


def test_the_command_line_never_prints_a_traceback(monkeypatch, capsys, tmp_path):
    def argv(*extra):
        return ["fit", "--data", "sleepstudy", "--formula", SLEEP, *extra]

    assert cli.main(["fit", "--data", str(tmp_path), "--formula", SLEEP]) == 2
    assert capsys.readouterr().err == f"admbjax: error: data file {str(tmp_path)!r} is a directory, not a CSV file\n"
    assert cli.main(argv("--json", str(tmp_path / "no" / "fit.json"))) == 2      # refused before the fit
    assert "its directory does not exist" in capsys.readouterr().err
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("y,x,g\n1,2,a\n1,2,3,4\n")
    assert cli.main(["fit", "--data", str(ragged), "--formula", "y ~ x + (1 | g)"]) == 2
    assert "is not a well-formed CSV file" in capsys.readouterr().err
    for error, text in [(RuntimeError("XLA ran out of memory"), "RuntimeError: XLA ran out of memory"),
                        (KeyError("no such level"), "no such level"), (ZeroDivisionError(), "ZeroDivisionError")]:
        def boom(args, error=error):
            raise error
        monkeypatch.setattr(cli, "_fit", boom)
        assert cli.main(argv()) == 2
        assert capsys.readouterr().err.endswith(f"{text}\n")
    monkeypatch.setattr(cli, "_fit", lambda args: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert cli.main(argv()) == 130 and capsys.readouterr().err == "admbjax: interrupted\n"
