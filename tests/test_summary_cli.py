"""lme4-like summary, DataFrame tables and the command line (README: "The JSON of a fit")."""

import subprocess
import sys

import numpy as np
import pytest

import admbjax
from admbjax import cli
from conftest import ROOT, cli_fit_json, reference

SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def reml():
    return admbjax.fit_formula(SLEEP, "sleepstudy")


def test_summary_has_lme4_sections_in_order(reml):
    text = reml.summary()
    order = ["Linear mixed model fit by REML", f"Formula: {SLEEP}", "REML criterion at convergence: 1743.6283",
             "Scaled residuals:", "Random effects:", "Residual", "Number of obs: 180, groups:  Subject, 18",
             "Fixed effects:", "Correlation of Fixed Effects:"]
    positions = [text.index(s) for s in order]
    assert positions == sorted(positions)
    # lme4 1.1-31 prints: Min -3.9536 1Q -0.4634 Median 0.0231 3Q 0.4634 Max 5.1793
    assert "-3.9536 -0.4634 0.0231 0.4634 5.1793" in text
    assert "-0.138" in text  # correlation of the fixed effects (lme4: -0.138)


def test_ml_summary_shows_information_criteria():
    fit = admbjax.fit_formula(SLEEP, "sleepstudy", method="ML")
    ref = reference("sleepstudy")["fits"]["lme4_lmer_ML"]
    assert fit.aic == pytest.approx(ref["AIC"], rel=1e-7) and fit.bic == pytest.approx(ref["BIC"], rel=1e-7)
    assert "AIC" in fit.summary() and "df.resid" in fit.summary()


def test_tables_are_dataframes(reml):
    fe = reml.fixef_table()
    assert list(fe.columns) == ["Estimate", "Std. Error", "t value"]
    assert fe.loc["Days", "t value"] == pytest.approx(10.467286 / 1.545790, rel=1e-4)
    vc = reml.varcorr()
    assert list(vc["Groups"]) == ["Subject", "Subject", "Residual"]
    assert vc.loc[1, "Corr.(Intercept)"] == pytest.approx(0.0655512, abs=1e-3)
    assert reml.ranef().shape == (18, 2) and reml.ranef().index.name == "Subject"


def test_cli_writes_every_json_field(tmp_path, capsys):
    rc, d = cli_fit_json(tmp_path, "--data", "sleepstudy", "--formula", SLEEP)
    assert rc == 0
    assert "REML criterion at convergence" in capsys.readouterr().out
    for key in ["schema", "method", "family", "formula", "n_obs", "n_groups", "criterion", "loglik", "fixed", "random", "varcorr",
                "sigma", "df", "converged", "singular", "max_abs_grad", "time_s"]:
        assert key in d
    assert d["criterion"] == pytest.approx(1743.628272, rel=1e-7)
    assert all(v is not None for v in d["fixed"]["se"])
    assert np.allclose(d["random"][0]["corr"], np.array(d["random"][0]["corr"]).T)
    assert d["random"][0]["names"] == ["(Intercept)", "Days"]


def test_cli_categorical_numeric_column(tmp_path):
    ref = reference("chickweight")["fits"]["lme4_lmer_ML"]
    rc, d = cli_fit_json(tmp_path, "--data", str(ROOT / "tests/reference/data/chickweight.csv"), "--formula",
                         "weight ~ Time + Diet + (1 | Chick)", "--categorical", "Diet", "--method", "ML")
    assert rc == 0 and d["fixed"]["names"] == list(ref["fixef"])
    assert d["criterion"] == pytest.approx(ref["criterion"], rel=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--data", "missing.csv"], "data file 'missing.csv' does not exist"),
    (["--formula", "Reaction ~ Dayz + (1 | Subject)"], "lacks; available: ['Reaction', 'Days', 'Subject']"),
    (["--family", "weibull"], "unknown `family` 'weibull'"),
    (["--method", "MLE"], "`method` must be 'REML' or 'ML'"),
    (["--formula", "Reaction ~ Days + (Days | )"], "malformed random-effect term"),
])
def test_cli_errors_exit_nonzero_without_traceback(capsys, args, message):
    options = {"--data": "sleepstudy", "--formula": SLEEP} | dict(zip(args[::2], args[1::2]))
    argv = ["fit"] + [x for kv in options.items() for x in kv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_console_script_error_has_no_traceback(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("y,x,g\n")
    proc = subprocess.run([sys.executable, "-m", "admbjax", "fit", "--data", str(empty), "--formula", "y ~ x + (1 | g)"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "has no rows" in proc.stderr and "Traceback" not in proc.stderr


def test_float32_mode_runs_the_same_fit_to_float32_accuracy(tmp_path):
    """``ADMBJAX_X64=0`` leaves JAX in float32 (to measure what float32 costs, e.g. on a GPU):
    the same sleepstudy fit, to float32's accuracy, and not reported as converged to float64's
    gradient tolerance."""
    import json
    import os
    import sys

    out = tmp_path / "fit.json"
    env = dict(os.environ, ADMBJAX_X64="0", ADMBJAX_COMPILATION_CACHE="0")
    proc = subprocess.run([sys.executable, "-m", "admbjax", "fit", "--data", "sleepstudy", "--formula",
                           "Reaction ~ Days + (Days | Subject)", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fit = json.loads(out.read_text())
    assert fit["criterion"] == pytest.approx(1743.6282719586, rel=1e-5)          # lme4: 1743.62827
    assert fit["criterion"] != pytest.approx(1743.6282719586, rel=1e-9)          # it is float32
    np.testing.assert_allclose(fit["fixed"]["estimate"], [251.405105, 10.467286], rtol=1e-5)


def test_cli_version(capsys):
    """``admbjax --version`` prints the package's version and exits 0, as ``admbjax.__version__``."""
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"admbjax {admbjax.__version__}"
