"""Batch fits: every fit in a batch equals the same fit done alone; failures stay in their lane."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import admbjax
from admbjax import cli

FORMULA = "y ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def genes():
    """sleepstudy's design with 5 responses ("genes"); gene g3 has a missing value."""
    df = admbjax.datasets.load("sleepstudy")
    rng = np.random.default_rng(0)
    for b in range(5):
        df[f"g{b}"] = df["Reaction"] + rng.normal(0, 30, len(df))
    df.loc[7, "g3"] = np.nan
    return df


@pytest.fixture(scope="module")
def batch(genes):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = admbjax.fit_formula_responses(FORMULA, genes, ["Reaction", "g0", "g1", "g2", "g3", "g4"])
    return results, [str(w.message) for w in caught]


def test_batch_equals_single_fits(batch, genes):
    results, _ = batch
    for name, res in zip(["Reaction", "g1"], [results[0], results[2]]):
        alone = admbjax.fit_formula(f"{name} ~ Days + (Days | Subject)", genes)
        assert res.criterion == pytest.approx(alone.criterion, rel=1e-8)
        np.testing.assert_allclose(res.beta, alone.beta, rtol=1e-6)
        np.testing.assert_allclose(res.x, alone.x, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(res.beta_se, alone.beta_se, rtol=1e-6)
        assert res.converged == alone.converged and res.singular == alone.singular


def test_failed_lane_does_not_touch_the_others(batch, genes):
    results, messages = batch
    assert results[4] is None
    assert any("response 'g3' was not fitted: column 'g3' has NaN or inf in 1 row(s) (0-based): 7" in m
               for m in messages)
    # the same batch without the bad gene gives the same numbers for the others (to rounding:
    # a lane's position in the vectorised program can change the last bit)
    clean = admbjax.fit_formula_responses(FORMULA, genes, ["Reaction", "g0", "g1", "g2", "g4"])
    for a, b in zip([r for r in results if r is not None], clean):
        assert a.criterion == pytest.approx(b.criterion, rel=1e-13)
        np.testing.assert_allclose(a.beta, b.beta, rtol=1e-11)


def test_each_fit_has_its_own_flags(batch):
    results, _ = batch
    assert all(r.converged for r in results if r is not None)
    assert len({r.criterion for r in results if r is not None}) == 5


def test_cli_by_writes_json_lines(tmp_path, capsys):
    df = admbjax.datasets.load("sleepstudy")
    df["half"] = np.where(df["Subject"].astype(int) < 340, "early", "late")
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "fits.jsonl"
    rc = cli.main(["fit", "--data", str(path), "--formula", "Reaction ~ Days + (Days | Subject)", "--by", "half",
                   "--json", str(out)])
    assert rc == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["by"] for r in records] == ["early", "late"]
    early = admbjax.fit_formula("Reaction ~ Days + (Days | Subject)", df[df["half"] == "early"])
    assert records[0]["criterion"] == pytest.approx(early.criterion, rel=1e-8)
    np.testing.assert_allclose(records[0]["fixed"]["estimate"], early.beta, rtol=1e-6)
    assert records[0]["n_groups"] == early.n_groups and records[1]["n_obs"] == 180 - early.n_obs


def test_batch_arrays_and_json_lines_equal_each_fit(by_levels, batch):
    """A batch's arrays and JSON lines (written from its arrays) say what each FitResult says:
    the same JSON text as ``json.dumps(result.to_dict())``, for a by-batch (with an unfitted
    level and a singular one) and a responses batch (with a failed lane)."""
    _, levels, by_results, _ = by_levels
    results, _ = batch
    for fits, extra in [(by_results, [{"by": lev} for lev in levels]), (results, None)]:
        lines = fits.json_lines(extra)
        for k, res in enumerate(fits):
            tail = {} if extra is None else extra[k]
            if res is None:
                assert json.loads(lines[k]) == dict({"error": "not fitted (see warnings)"}, **tail)
                assert not fits.fitted[k] and np.isnan(fits.criterion[k]) and np.isnan(fits.beta[k]).all()
                continue
            assert lines[k] == json.dumps(dict(res.to_dict(), **tail))
            assert fits.criterion[k] == res.criterion and fits.converged[k] == res.converged
            assert fits.singular[k] == res.singular and np.array_equal(fits.beta[k], res.beta)
    assert by_results.singular.tolist() == [False, False, False, True]


def test_simulate_matches_the_model_moments():
    """Simulated responses have the fitted model's mean X beta and covariance V = ZGZ' + sigma^2 I."""
    from admbjax._formula_batch import simulate

    model, grouped, d = admbjax.formula_model("Reaction ~ Days + (Days | Subject)", "sleepstudy")
    fake = type("Fit", (), {"family": "gaussian", "beta": np.array([250.0, 10.0]), "sigma": 25.0,
                            "G": np.array([[600.0, 10.0], [10.0, 35.0]]), "df": None})()
    Y = simulate(fake, d, 20000, seed=1)
    first = np.asarray(d.groups.codes) == 0
    Z = d.Z[first]
    V = Z @ fake.G @ Z.T + fake.sigma**2 * np.eye(first.sum())
    np.testing.assert_allclose(Y[first].mean(axis=1), d.X[first] @ fake.beta, atol=4 * np.sqrt(np.diag(V).max() / 20000))
    np.testing.assert_allclose(np.cov(Y[first]), V, rtol=0.1, atol=0.05 * V.max())


def test_parametric_bootstrap_runs_in_one_batch():
    fit, table, est = admbjax.bootstrap("Reaction ~ Days + (Days | Subject)", "sleepstudy", n_boot=8)
    assert est.shape == (8, len(table)) and np.isfinite(est).all()
    assert list(table.index) == list(fit.confint().index)
    assert (table["2.5 %"] <= table["97.5 %"]).all() and (table["Bootstrap SE"] > 0).all()
    # 8 refits of sleepstudy-shaped data: a bootstrap SE within a factor 2 of the Wald SE
    ratio = table["Bootstrap SE"].iloc[:2].to_numpy() / fit.beta_se
    assert np.all((ratio > 0.5) & (ratio < 2.0))


@pytest.fixture(scope="module")
def by_levels():
    """Four levels: sleepstudy; a noisier, unbalanced copy; one subject only (not fittable);
    no subject effect at all (a singular fit that needs many iterations)."""
    base = admbjax.datasets.load("sleepstudy")
    rng = np.random.default_rng(3)
    noisy = base.assign(Reaction=base["Reaction"] + rng.normal(0, 20, len(base))).iloc[5:]
    lone = base[base["Subject"] == base["Subject"].iloc[0]]
    flat = base.assign(Reaction=250 + 10 * base["Days"] + np.random.default_rng(0).normal(0, 30, len(base)))
    df = pd.concat([base.assign(lab="a"), noisy.assign(lab="b"), lone.assign(lab="c"), flat.assign(lab="d")],
                   ignore_index=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        levels, results = admbjax.fit_formula_by("Reaction ~ Days + (Days | Subject)", df, by="lab")
    return df, levels, results, [str(w.message) for w in caught]


def test_by_fits_equal_fits_of_each_level_alone(by_levels):
    from admbjax import _batch

    df, levels, results, _ = by_levels
    assert levels == ["a", "b", "c", "d"]
    assert results[3].singular and results[3].iterations > _batch.FIRST_PASS    # fitted in the second pass
    for level, res in [(lev, r) for lev, r in zip(levels, results) if lev != "c"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", admbjax.AdmbjaxWarning)     # level d is singular
            alone = admbjax.fit_formula("Reaction ~ Days + (Days | Subject)", df[df["lab"] == level])
        assert res.criterion == pytest.approx(alone.criterion, rel=1e-8)
        np.testing.assert_allclose(res.beta, alone.beta, rtol=1e-6)
        np.testing.assert_allclose(res.x, alone.x, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(res.beta_se, alone.beta_se, rtol=1e-6)
        assert res.n_obs == alone.n_obs and res.ids == alone.ids and res.converged
        assert res.iterations == alone.iterations and res.singular == alone.singular


def test_by_level_that_cannot_be_fitted_is_named_and_skipped(by_levels):
    _, _, results, messages = by_levels
    assert results[2] is None and results[0] is not None and results[1] is not None
    assert any("level 'c' of 'lab' was not fitted: grouping factor 'Subject' has 1 level(s)" in m for m in messages)


def test_by_builds_per_level_designs_where_one_design_would_differ():
    from admbjax import _by

    assert _by._stateless("y ~ log(x) + I(x**2) + (x | g)")
    assert not _by._stateless("y ~ center(x) + (x | g)")
    base = admbjax.datasets.load("sleepstudy")
    df = pd.concat([base.assign(lab=0), base.iloc[::2].assign(lab=1)], ignore_index=True)
    levels, results = admbjax.fit_formula_by("Reaction ~ center(Days) + (Days | Subject)", df, by="lab")
    alone = admbjax.fit_formula("Reaction ~ center(Days) + (Days | Subject)", df[df["lab"] == 1])
    assert levels == [0, 1]
    assert results[1].criterion == pytest.approx(alone.criterion, rel=1e-8)
    np.testing.assert_allclose(results[1].beta, alone.beta, rtol=1e-6)


def test_by_column_in_the_formula_is_dropped_in_every_level_as_alone():
    base = admbjax.datasets.load("sleepstudy")
    df = pd.concat([base.assign(grp=0.0), base.iloc[10:].assign(grp=1.0)], ignore_index=True)
    formula = "Reaction ~ Days + grp + (Days | Subject)"
    with pytest.warns(admbjax.AdmbjaxWarning, match=r"dropping 1 column / coefficient \(grp\)"):
        levels, results = admbjax.fit_formula_by(formula, df, by="grp")
    with pytest.warns(admbjax.AdmbjaxWarning, match=r"dropping 1 column"):
        alone = admbjax.fit_formula(formula, df[df["grp"] == 1.0])
    assert results[1].beta_names == alone.beta_names == ("(Intercept)", "Days")
    assert results[1].criterion == pytest.approx(alone.criterion, rel=1e-8)
    np.testing.assert_allclose(results[1].beta, alone.beta, rtol=1e-6)


def test_a_fit_stopped_early_is_not_converged_and_its_json_says_so(by_levels):
    """``converged`` is a plain bool also when the optimiser stops early (a numpy bool broke
    ``json.dumps(result.to_dict())`` and the command line's ``--json``)."""
    df = by_levels[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", admbjax.AdmbjaxWarning)
        res = admbjax.fit_formula("Reaction ~ Days + (Days | Subject)", df[df["lab"] == "d"], max_iter=2)
    assert res.converged is False and res.iterations == 2
    assert json.loads(json.dumps(res.to_dict()))["converged"] is False


def test_shared_lanes_give_the_inputs_of_their_per_level_models_and_data(by_levels):
    """``SharedLanes.inputs`` (stacked from the split design) equals what ``ListLanes`` stacks
    from each level's ``model(i)`` and ``data(i)``: the batch fits what the results describe."""
    import jax

    from admbjax import _by, _objective, _options
    from admbjax._batch import ListLanes

    df = by_levels[0]
    levels, shared, index, errors = _by.lanes("Reaction ~ Days + (Days | Subject)", df, "lab", "gaussian", (), "fail")
    assert isinstance(shared, _by.SharedLanes) and index.tolist() == [0, 1, -1, 2] and errors[2] is not None
    lanes = range(len(shared.n_obs))
    listed = ListLanes([shared.model(i) for i in lanes], [shared.data(i) for i in lanes])
    for method in ("REML", "ML"):
        spec = _objective.objective_spec(shared.base, method, _options.Options(), batched=True)
        a, b = shared.inputs(spec, np.arange(3)), listed.inputs(spec, np.arange(3))
        assert jax.tree.structure(a) == jax.tree.structure(b)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(shared.n_obs, listed.n_obs)
    np.testing.assert_array_equal(shared.n_subjects, listed.n_subjects)
