"""The hand-written sleepstudy model (models/sleepstudy_lmm.py) against lme4 1.1-31.

Reference: tests/reference/sleepstudy.json (lme4 1.1-31, R 4.2.2,
``lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = TRUE/FALSE)``).
"""

import json

import numpy as np
import pytest

import admbjax

from conftest import reference

REF = reference("sleepstudy")["fits"]


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_matches_lme4(sleepstudy_fits, method):
    fit, ref = sleepstudy_fits[method], REF[f"lme4_lmer_{method}"]
    assert fit.converged and fit.method == method
    # criterion to 1e-7 relative; admbjax may only be better (lower), never worse beyond that
    assert fit.criterion == pytest.approx(ref["criterion"], rel=1e-7)
    assert fit.criterion <= ref["criterion"] + 1e-9 * ref["criterion"]
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-7)
    np.testing.assert_allclose(fit.beta, list(ref["fixef"].values()), rtol=1e-5)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-4)
    G = ref["G"]["Subject"]
    np.testing.assert_allclose(np.sqrt(np.diag(fit.G)), G["sd"], rtol=1e-4)
    corr = fit.G[0, 1] / np.sqrt(fit.G[0, 0] * fit.G[1, 1])
    assert corr == pytest.approx(G["corr"][0][1], abs=1e-3)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_fixed_effect_se_and_modes_match_lme4(sleepstudy_fits, method):
    fit, ref = sleepstudy_fits[method], REF[f"lme4_lmer_{method}"]
    np.testing.assert_allclose(fit.beta_se, list(ref["fixef_se"].values()), rtol=1e-4)
    first3 = ref["ranef_first3"]["Subject"]
    assert list(fit.ids[:3]) == first3["levels"]
    np.testing.assert_allclose(fit.b[:3], first3["values"], rtol=1e-4)


def test_gradient_is_zero_at_optimum(sleepstudy_fits):
    for fit in sleepstudy_fits.values():
        assert fit.max_abs_grad < 1e-5
        assert fit.hessian_pd and not fit.singular
        assert fit.time_compile >= 0 and fit.time_fit > 0


def test_model_script_writes_design_json(sleepstudy, tmp_path):
    out = tmp_path / "fit.json"
    result = sleepstudy.main(["--method", "ML", "--json", str(out)])
    d = json.loads(out.read_text())
    assert d["method"] == "ML" and d["family"] == "gaussian"
    assert d["n_obs"] == 180 and d["n_groups"] == 18
    assert d["criterion"] == pytest.approx(REF["lme4_lmer_ML"]["criterion"], rel=1e-7)
    assert d["loglik"] == pytest.approx(-d["criterion"] / 2)
    assert d["fixed"]["names"] == ["(Intercept)", "Days"]
    assert d["random"][0]["group"] == "Subject" and len(d["random"][0]["sd"]) == 2
    assert d["converged"] is True and d["singular"] is False and d["df"] is None
    assert set(d["time_s"]) == {"compile", "fit"}
    assert result.criterion == d["criterion"]


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_student_t_twin_fits_both_ways(sleepstudy_t, sleepstudy_fits, method):
    """models/sleepstudy_t_lmm.py: the Gaussian model with one line changed, df learned."""
    model, data = sleepstudy_t.build()
    fit = admbjax.fit(model, data, method)
    assert fit.converged and fit.max_abs_grad < 1e-5 and fit.hessian_pd
    assert 1.5 < fit.df < 10 and fit.report_se["df"] > 0   # sleepstudy has heavy tails
    # the Student-t family contains the Gaussian (df -> infinity): it fits at least as well
    assert fit.loglik > sleepstudy_fits[method].loglik
