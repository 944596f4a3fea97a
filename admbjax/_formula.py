"""lme4-style formulas: ``y ~ x + (x | g)`` becomes a per-subject model the engine fits.

The fixed part and each random-effect term are materialised by formulaic (treatment
contrasts, interactions, transformations); only the random-effect bars ``( expr | g )`` and
``( expr || g )`` are split off here. Column names follow R: ``(Intercept)``, ``SexMale``,
``age:SexMale``; factor levels sorted (C locale for strings, numerically for numeric
columns declared categorical), the first level the reference.

The model is the one of lme4 (Bates et al. 2015, J. Stat. Softw. 67(1)): spherical random
effects ``u_i ~ N(0, I)``, ``b_i = s Lambda u_i`` with ``Lambda`` block lower-triangular
(one block per random term; ``||`` terms split into scalar blocks) and ``s = sigma`` for
families with a scale (lme4's relative parametrisation), ``s = 1`` otherwise.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, replace

import formulaic
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.stats import norm

from . import _reterms, _syntax
from ._data import GroupedData, _list, group_data
from ._fit import fit
from ._families import GAUSSIAN as GAUSSIAN_FAMILY
from ._families import Family, get_family, glm_start, ols
from ._gaussian import moment_start
from ._lambda import LambdaMap, RandomLayout, TermLayout
from ._formula_nll import (crossed_totals, gaussian_crossed_stats_functions, gaussian_stats_functions, lambda_signs,
                           model_functions, subject_totals)
from ._model import Model
from ._objective import make_objective
from ._results import AdmbjaxWarning
from ._scope import scoped

NA_ACTIONS = ("fail", "omit")


# ---------------------------------------------------------------- parsing the bars


def _split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` outside parentheses and backticks."""
    parts, depth, start, quoted = [], 0, 0, False
    for i, ch in enumerate(text):
        quoted ^= ch == "`"
        if quoted or ch == "`":
            continue
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            raise ValueError(f"malformed formula: unbalanced ')' in {text!r}")
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"malformed formula: unbalanced '(' in {text!r}")
    if quoted:
        raise ValueError(f"malformed formula: unbalanced '`' in {text!r}")
    return parts + [text[start:]]


@dataclass(frozen=True)
class Bar:
    """A random-effect term ``(expr | group)``; ``double`` for ``||`` (uncorrelated)."""

    expr: str
    group: str
    double: bool


@dataclass(frozen=True)
class ParsedFormula:
    lhs: str
    fixed: str
    bars: tuple
    fixed_terms: tuple = ("1",)


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4 formula into response, fixed part and random-effect bars."""
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise ValueError(f"malformed formula {formula!r}: expected one '~', as in 'y ~ x + (x | g)'")
    lhs, rhs = (s.strip() for s in formula.split("~"))
    if not lhs:
        raise ValueError(f"malformed formula {formula!r}: no response left of '~'")
    fixed, bars = [], []
    for term in (t.strip() for t in _split_top(rhs, "+")):
        if not term:
            raise ValueError(f"malformed formula {formula!r}: empty term")
        inner = term[1:-1] if term.startswith("(") and term.endswith(")") else None
        pieces = _split_top(inner, "|") if inner is not None else [term]
        if len(pieces) == 1:
            fixed.append(term)
            continue
        double = len(pieces) == 3 and pieces[1] == ""
        if len(pieces) not in (2, 3) or (len(pieces) == 3 and not double):
            raise ValueError(f"malformed random-effect term {term!r}: expected (expr | group) or (expr || group)")
        expr, group = pieces[0].strip(), pieces[-1].strip()
        if not expr or not group:
            raise ValueError(f"malformed random-effect term {term!r}: expected (expr | group)")
        bars += [Bar(expr, g, double) for g in expand_nesting(group, term)]
    if not bars:
        raise ValueError(f"formula {formula!r} has no random-effect term such as (1 | group); "
                         "admbjax fits mixed models")
    return ParsedFormula(lhs, " + ".join(fixed) if fixed else "1", tuple(bars), tuple(fixed) or ("1",))


def expand_nesting(group: str, term: str) -> list[str]:
    """lme4's expansion of a nested grouping factor (``findbars``' ``expandSlash``):
    ``a/b`` -> ``["b:a", "a"]``, ``a/b/c`` -> ``["c:(b:a)", "b:a", "a"]``; a factor without
    ``/`` as it is."""
    parts = [p.strip() for p in _split_top(group, "/")]
    if any(not p for p in parts):
        raise ValueError(f"malformed random-effect term {term!r}: empty part of the grouping factor {group!r}")
    names = [parts[0]]
    for part in parts[1:]:
        inner = names[-1]
        names.append(f"{part}:({inner})" if ":" in inner else f"{part}:{inner}")
    return names[::-1]


# ---------------------------------------------------------------- data frame handling


def r_name(column: str, names: _syntax.Names | None = None) -> str:
    """formulaic's column name in R's spelling, with the user's column names (``names``):
    ``_c0_[T.Male]`` -> ``SexMale``, ``Intercept`` -> ``(Intercept)``."""
    if column == "Intercept":
        return "(Intercept)"
    parts = re.split(r"(\[(?:T\.)?[^\]]*\])", column)      # factor levels in brackets, kept as they are
    out = []
    for k, part in enumerate(parts):
        if k % 2:
            out.append(re.sub(r"^\[(?:T\.)?", "", part)[:-1])
        else:
            out.append(names.user_name(part) if names is not None else part)
    return "".join(out)


def _level_label(v) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def as_factor(series: pd.Series) -> pd.Categorical:
    """R's ``factor()``: levels sorted (numerically for numbers, C locale for strings)."""
    if pd.api.types.is_bool_dtype(series):
        series = series.map({False: "FALSE", True: "TRUE"})
    codes, uniques = pd.factorize(series, sort=pd.api.types.is_numeric_dtype(series))
    if pd.api.types.is_numeric_dtype(series):
        labels = [_level_label(v) for v in uniques]
    else:
        labels = [str(v) for v in uniques]
    categories = sorted(set(labels)) if not pd.api.types.is_numeric_dtype(series) else list(dict.fromkeys(labels))
    index = {label: i for i, label in enumerate(categories)}
    remap = np.array([index[label] for label in labels] + [-1], dtype=np.int64)   # code -1 (missing) stays -1
    return pd.Categorical.from_codes(remap[codes], categories=categories)


@dataclass(frozen=True)
class Translated:
    """A formula's parts as formulaic sees them (columns renamed to aliases), with the names."""

    names: _syntax.Names
    response: tuple        # one term, or cbind's two
    fixed: str
    bars: tuple            # (formulaic text, Bar) per random-effect term
    groups: tuple          # the grouping columns of each bar (the user's names; several for a:b)


def translate(parsed: ParsedFormula, columns) -> Translated:
    """Every part of ``parsed`` in formulaic's terms (:mod:`admbjax._syntax`): columns
    renamed to aliases, each term checked against the allowed functions. Names that are
    not columns are reported together, with the columns ``data`` has."""
    columns, used, missing = list(columns), [], []

    def one(text, where=None):
        try:
            return _syntax.translate(text, columns, used, where)
        except _syntax.UnknownColumns as err:
            missing.extend(err.names)
            return ""

    cbind = re.fullmatch(r"cbind\((.*)\)", parsed.lhs.strip())
    lhs_terms = _split_top(cbind.group(1), ",") if cbind else [parsed.lhs]
    if cbind and len(lhs_terms) != 2:
        raise ValueError(f"malformed response {parsed.lhs!r}: cbind() takes (successes, failures)")
    response = tuple(one(t.strip()) for t in lhs_terms)
    fixed = " + ".join(one(t) for t in parsed.fixed_terms)
    bars, groups = [], []
    for bar in parsed.bars:
        bars.append((one(bar.expr, f"({bar.expr} | {bar.group})"), bar))
        groups.append(_group_column(bar, one))
    if missing:
        raise ValueError(f"the formula uses column(s) {list(dict.fromkeys(missing))} that `data` lacks; "
                         f"available: {columns}")
    return Translated(_syntax.Names(tuple(used)), response, fixed, tuple(bars), tuple(groups))


def _group_column(bar: Bar, one) -> tuple:
    """The data columns ``bar`` groups by: one, or several for an interaction ``a:b``
    (parentheses, as in lme4's ``c:(b:a)``, only group)."""
    toks = [t for t in _syntax.tokens(bar.group, bar.group) if t[1] not in ("(", ")")]
    names, ok = toks[::2], all(t == ("op", ":") for t in toks[1::2]) and len(toks) % 2 == 1
    if not ok or any(kind not in ("name", "backtick") for kind, _ in names):
        raise ValueError(f"grouping factor {bar.group!r} must be a column, an interaction of columns (a:b) or "
                         "nested columns (a/b)")
    columns = tuple(_syntax.column_name(t) for t in names)
    for c in columns:
        one(f"`{c}`")
    if len(set(columns)) < len(columns):
        raise ValueError(f"grouping factor {bar.group!r} names a column twice")
    return columns


def _infinite(df: pd.DataFrame, column: str) -> np.ndarray:
    """Whether each row of a numeric (not boolean) ``column`` is infinite; all False otherwise."""
    x = df[column]
    if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
        return np.isinf(x.to_numpy(float))
    return np.zeros(len(df), bool)


def unusable_mask(df: pd.DataFrame, na_action: str) -> np.ndarray:
    """The rows :func:`unusable_rows` objects to: a missing value (unless ``na_action`` is
    ``"omit"``) or an infinite number."""
    bad = df.isna().any(axis=1).to_numpy(copy=True) if na_action == "fail" else np.zeros(len(df), bool)
    for c in df.columns:
        bad |= _infinite(df, c)
    return bad


def unusable_rows(df: pd.DataFrame, na_action: str, rows=None) -> str | None:
    """Why some rows of ``df`` (the columns a formula uses) cannot be used: missing values
    (unless ``na_action`` is ``"omit"``) or infinite numbers; ``None`` where every row can.
    ``rows``: the numbers that name the rows (default their positions)."""
    rows = np.arange(len(df)) if rows is None else np.asarray(rows)
    na = df.isna()
    if na_action == "fail" and na.to_numpy().any():
        rows = rows[na.any(axis=1).to_numpy()]
        counts = {c: int(n) for c, n in na.sum().items() if n}
        return (f"{len(rows)} row(s) have missing values (per column: {counts}); rows (0-based): "
                f"{_list(rows)}; pass na_action='omit' (CLI: --na-action omit) to drop them")
    for c in df.columns:
        bad = _infinite(df, c)
        if bad.any():
            return f"column {c!r} has inf in {int(bad.sum())} row(s) (0-based): {_list(rows[bad])}"
    return None


def _prepare(df: pd.DataFrame, tr: Translated, response: str, categorical, na_action: str) -> pd.DataFrame:
    """The columns ``tr`` uses, checked (missing values, inf), with factors made."""
    if na_action not in NA_ACTIONS:
        raise ValueError(f"`na_action` must be one of {NA_ACTIONS}, got {na_action!r}")
    if len(df) == 0:
        raise ValueError("`data` has no rows")
    used = list(tr.names.columns)
    twice = sorted({c for c in df.columns[df.columns.duplicated()] if c in used})
    if twice:
        raise ValueError(f"`data` has more than one column named {', '.join(map(repr, twice))}")
    unknown_cat = [c for c in categorical if c not in df.columns]
    if unknown_cat:
        raise ValueError(f"`categorical` names column(s) {unknown_cat} that `data` lacks; available: {list(df.columns)}")
    df = df[used]
    error = unusable_rows(df, na_action)
    if error:
        raise ValueError(error)
    na = df.isna().any(axis=1).to_numpy()
    if na.any():
        counts = {c: int(n) for c, n in df.isna().sum().items() if n}
        warnings.warn(f"dropped {int(na.sum())} row(s) with missing values (per column: {counts})", AdmbjaxWarning,
                      stacklevel=4)
        df = df.loc[~na]
    groups = {c for columns in tr.groups for c in columns}
    for c in df.columns:
        if c in categorical or c in groups or not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            if c != response:
                df[c] = as_factor(df[c])
    return df


# ---------------------------------------------------------------- design matrices


@dataclass(frozen=True, eq=False)
class Design:
    """Response, design matrices and the random-effect structure of a formula on data."""

    formula: str
    y: np.ndarray
    X: np.ndarray
    beta_names: tuple
    Z: np.ndarray            # the subject's local design ([rows, q]: _reterms.Structure.Z)
    random_names: tuple      # labels of u
    blocks: tuple            # sizes of the blocks of G (every term), in order
    groups: pd.Categorical   # the subject factor
    group: str
    dropped: tuple           # aliased fixed-effect columns dropped (lme4's rank check)
    trials: np.ndarray | None = None
    structure: _reterms.Structure | None = None     # the terms, the subject, the layout


def _matrix(spec: str, df: pd.DataFrame, names: _syntax.Names, where: str | None = None,
            term: str | None = None) -> pd.DataFrame:
    """The model matrix of ``spec`` (formulaic's text, :func:`translate`) on ``df`` (columns
    renamed to their aliases), with R's column names; ``where``: the user's text of it;
    ``term``: what to call its one column in errors (the response)."""
    where = names.user_name(spec) if where is None else where
    try:
        with np.errstate(all="ignore"):       # log(0), sqrt(-1): reported below, by term and row
            mm = formulaic.model_matrix(spec, df, context=_syntax.CONTEXT, na_action="ignore")
    except (formulaic.errors.FormulaicError, ValueError, TypeError, ArithmeticError) as err:
        raise ValueError(f"malformed formula part {where!r}: {names.user_name(str(err))}") from None
    out = pd.DataFrame(np.asarray(mm, dtype=float), columns=[r_name(c, names) for c in mm.columns])
    bad = ~np.isfinite(out.to_numpy())
    if bad.any():
        column = term or out.columns[np.flatnonzero(bad.any(axis=0))[0]]
        rows = df.index[bad.any(axis=1)]
        raise ValueError(f"formula term {column!r} is NaN or infinite in {len(rows)} row(s) (0-based): "
                         f"{_list(rows)}; the data there are outside the domain of its function")
    return out


def _response(tr: Translated, df: pd.DataFrame, lhs: str):
    cols = []
    for t in tr.response:
        if re.fullmatch(r"_c\d+_", t) and not pd.api.types.is_numeric_dtype(df[t]):
            raise ValueError(f"the response {tr.names.user_name(t).strip('`')!r} is not numeric (dtype {df[t].dtype})")
        cols.append(_matrix(f"0 + I({t})", df, tr.names, lhs, tr.names.user_name(t)).iloc[:, 0].to_numpy())
    if len(cols) == 2:
        return cols[0], cols[0] + cols[1]
    return cols[0], None


def drop_aliased(X: pd.DataFrame, tol: float = 1e-7):
    """``(X without its aliased columns, the names dropped)``, as lme4 drops them.

    Columns are taken in order; one is aliased when what is left of it after projecting out
    the columns kept before it has a norm below ``tol`` times its own (R's ``qr()``, LINPACK's
    ``dqrdc2``, which lme4's rank check calls with ``tol = 1e-7``). Projections are taken in
    the triangular factor of a QR decomposition of ``X``, which has every norm and inner
    product of its columns: so at any shape, with more columns than rows too.
    """
    A = X.to_numpy(dtype=float)
    R = np.linalg.qr(A, mode="r") if A.size else A
    basis, keep = np.zeros((R.shape[0], 0)), []
    for j in range(R.shape[1]):
        col = R[:, j]
        rest = col - basis @ (basis.T @ col)
        rest = rest - basis @ (basis.T @ rest)          # twice is enough (Giraud et al. 2005)
        norm, left = np.linalg.norm(col), np.linalg.norm(rest)
        if norm > 0 and left > tol * norm:
            keep.append(j)
            basis = np.column_stack([basis, rest / left])
    dropped = tuple(X.columns[j] for j in range(X.shape[1]) if j not in keep)
    return X.iloc[:, keep], dropped


def _random(tr: Translated, df: pd.DataFrame) -> list:
    """``[(bar, its Z as a DataFrame)]``; an effect twice on one grouping factor is an error."""
    out, seen = [], {}
    for spec, bar in tr.bars:
        Zb = _matrix(spec, df, tr.names, bar.expr)
        names = seen.setdefault(bar.group, [])
        dup = [c for c in Zb.columns if c in names]
        if dup:
            raise ValueError(f"random-effect term(s) {dup} appear more than once for grouping factor "
                             f"{bar.group!r} in the formula")
        names += list(Zb.columns)
        out.append((bar, Zb))
    return out


def _frames(formula: str, df: pd.DataFrame, categorical, na_action: str):
    """``(translated, prepared data frame, y, trials, X (no column dropped yet), [(bar, Z)])``."""
    parsed = parse_formula(formula)
    tr = translate(parsed, df.columns)
    response = parsed.lhs.strip().strip("`")
    df = _prepare(df, tr, response, tuple(categorical), na_action)
    aliased = df.rename(columns=tr.names.to_alias)
    y, trials = _response(tr, aliased, parsed.lhs)
    X = _matrix(tr.fixed, aliased, tr.names, parsed.fixed)
    return tr, df, y, trials, X, _random(tr, aliased)


def design_frames(formula: str, df: pd.DataFrame, categorical=(), na_action: str = "fail"):
    """The parts of a one-factor :func:`design` before any per-dataset check (for
    ``fit_formula_by``): ``(group, prepared data frame, y, trials, X (a DataFrame, no
    column dropped yet), Z, blocks)``."""
    tr, df, y, trials, X, bars = _frames(formula, df, categorical, na_action)
    if len(set(tr.groups)) > 1 or len(tr.groups[0]) > 1:
        raise ValueError(f"fit_formula_by fits models with one grouping factor, a column; this formula has "
                         f"{', '.join(dict.fromkeys(b.group for _, b in tr.bars))}")
    Z = pd.concat([Zb for _, Zb in bars], axis=1)
    blocks = tuple(k for bar, Zb in bars for k in ((1,) * Zb.shape[1] if bar.double else (Zb.shape[1],)))
    return tr.groups[0][0], df, y, trials, X, Z, blocks


def dropped_warning(dropped: tuple) -> str:
    n = len(dropped)
    return (f"fixed-effect model matrix is rank deficient so dropping {n} column{'s' if n > 1 else ''} / "
            f"coefficient{'s' if n > 1 else ''} ({', '.join(dropped)})")


def too_few_groups(group: str, n_groups: int) -> str | None:
    """lme4's error for a grouping factor with fewer than two levels, or ``None``."""
    if n_groups < 2:
        return f"grouping factor {group!r} has {n_groups} level(s); a random effect needs at least 2"
    return None


def design(formula: str, df: pd.DataFrame, categorical=(), na_action: str = "fail") -> Design:
    """Response, fixed and random design of ``formula`` on ``df`` (lme4's ``lFormula``)."""
    tr, df, y, trials, X, bars = _frames(formula, df, categorical, na_action)
    X, dropped = drop_aliased(X)
    if dropped:
        warnings.warn(dropped_warning(dropped), AdmbjaxWarning, stacklevel=3)
    factors, terms = {}, []
    for (bar, Zb), columns in zip(bars, tr.groups):
        if bar.group not in factors:
            name = columns[0] if len(columns) == 1 else bar.group        # a column: its name, unquoted
            factors[bar.group] = _reterms.interaction(df, columns, name)
            error = too_few_groups(name, factors[bar.group].n_levels)
            if error:
                raise ValueError(error)
        Z = Zb.to_numpy()
        if bar.double:      # lme4 splits (x || g) into (1 | g) + (0 + x | g) before ordering the terms
            terms += [_reterms.Term(factors[bar.group], (n,), Z[:, [e]]) for e, n in enumerate(Zb.columns)]
        else:
            terms.append(_reterms.Term(factors[bar.group], tuple(Zb.columns), Z))
    st = _reterms.structure(terms, X.shape[1])
    subject = pd.Categorical.from_codes(st.subject.codes, categories=list(st.subject.levels))
    return Design(formula, y, X.to_numpy(), tuple(X.columns), st.Z, st.u_names, st.layout.blocks,
                  subject, st.subject.name, dropped, trials, st)


# ---------------------------------------------------------------- the model


def sufficient_statistics(d: Design, beta0: np.ndarray) -> dict:
    """Per-subject ``n, r'r, X'r, Z'r, X'X, X'Z, Z'Z`` (one row per subject), ``r = y - X beta0``."""
    n_groups = len(d.groups.categories)
    stats = subject_totals(np.asarray(d.groups.codes), n_groups, d.y - d.X @ beta0, d.X, d.Z)
    return dict(stats, beta0=np.broadcast_to(beta0, (n_groups, len(beta0))).copy())


def unidentifiable(n: int, n_groups: int, random_names, group: str, family: Family, blocks=None) -> str | None:
    """lme4's error where there are no more observations than random effects in some term
    (``check.nobs.vs.nRE``, ``checkZdims``: each term's levels x effects, not their total),
    or ``None``. ``blocks``: the sizes of the terms (the blocks of ``Lambda``; a ``||`` term
    is one per effect, as lme4 splits it), in the order of ``random_names``; default one term."""
    if "log_sigma" not in family.dispersion:
        return None
    blocks = (len(random_names),) if blocks is None else tuple(blocks)
    start = 0
    for k in blocks:
        names = tuple(random_names[start:start + k])
        start += k
        if n <= k * n_groups:
            return (f"number of observations (={n}) <= number of random effects (={k * n_groups}) for term "
                    f"({' + '.join(names)} | {group}); the random-effects parameters and the "
                    "residual variance (or scale parameter) are probably unidentifiable")
    return None


def _check_identifiable(d: Design, family: Family) -> None:
    for t in d.structure.terms:
        error = unidentifiable(len(d.y), t.factor.n_levels, t.names, t.factor.name, family, t.blocks)
        if error:
            raise ValueError(error)


def initial_values(d: Design, family: Family, start: dict | None) -> tuple[dict, np.ndarray]:
    """Starting ``(theta, beta)``: lme4's ``Lambda = I``; ``beta`` from the GLM without random
    effects; the scale from least squares (Student-t: from the median absolute residual,
    which gross outliers do not inflate); ``df = 10``. ``start`` overrides on the natural
    scale: ``{"beta": [...], "sigma": s, "df": nu}``.
    """
    start = dict(start or {})
    unknown = set(start) - {"beta", "sigma", "df"}
    if unknown:
        raise ValueError(f"`start` has unknown key(s) {sorted(unknown)}; allowed: beta, sigma, df")
    beta = glm_start(family, d.y, d.X, d.trials)
    theta = {"lambda": d.structure.layout.diag.astype(float)}
    if "log_sigma" in family.dispersion:
        resid = d.y - d.X @ beta
        sigma = 1.4826 * np.median(np.abs(resid)) if family.name == "student_t" else ols(d.y, d.X)[1]
        theta["log_sigma"] = np.log(_positive(start, "sigma", max(sigma, 1e-8 * (1 + np.std(d.y)))))
    if "log_df" in family.dispersion:
        theta["log_df"] = np.log(_positive(start, "df", 10.0))
    elif "df" in start or ("sigma" in start and "log_sigma" not in family.dispersion):
        raise ValueError(f"`start` gives {sorted(set(start) & {'df', 'sigma'})}, which family {family.name!r} does not have")
    if "beta" in start:
        beta = np.asarray(start["beta"], dtype=float)
        if beta.shape != (d.X.shape[1],) or not np.isfinite(beta).all():
            raise ValueError(f"`start['beta']` must be {d.X.shape[1]} finite values for {list(d.beta_names)}")
    return theta, beta


def _positive(start: dict, key: str, default: float) -> float:
    value = start.get(key, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`start['{key}']` must be a positive number, got {value!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"`start['{key}']` must be a positive number, got {value!r}")
    return value


def _check_response(d: Design, family: Family) -> None:
    if d.trials is not None and family.name != "binomial":
        raise ValueError(f"cbind(successes, failures) is a binomial response; family is {family.name!r}")
    if family.validate is not None:
        family.validate(d.y, d.trials if d.trials is not None else np.ones_like(d.y))
    error = constant_response(d.y, family, d.formula.split("~")[0].strip())
    if error:
        raise ValueError(error)
    if family.name == "binomial" and (d.trials is None or np.all(d.trials == 1)):
        for f in d.structure.factors:
            lo = np.bincount(f.codes, weights=d.y == 0, minlength=f.n_levels)
            n = np.bincount(f.codes, minlength=f.n_levels)
            if n.max() > 1 and np.all((lo == 0) | (lo == n)):
                raise ValueError(f"the 0/1 response is all one value within every level of {f.name!r}: the "
                                 "random-effect variance is not identified (complete separation by group)")


def constant_response(y: np.ndarray, family: Family, response: str) -> str | None:
    """lme4's error for a constant response of a family with a scale (its residual variance
    would be zero: no likelihood has a maximum), or ``None``."""
    if "log_sigma" in family.dispersion and len(y) and np.all(y == y[0]):
        return (f"the response {response!r} is constant (every value is {y[0]:.6g}): its residual variance is "
                "zero, so the model has no maximum likelihood (lme4: response is constant)")
    return None


def no_residual_dof(n: int, p: int, family: Family) -> str | None:
    """The error where a family with a scale has no residual degrees of freedom (``n <= p``
    after aliased columns are dropped: the scale is then zero or undefined), or ``None``."""
    if "log_sigma" in family.dispersion and n <= p:
        return (f"number of observations (={n}) <= number of fixed effects (={p}, aliased columns dropped): no "
                "residual degrees of freedom, so the residual variance (or scale parameter) is not identified")
    return None


@scoped
def formula_model(formula: str, data, family="gaussian", categorical=(), na_action: str = "fail",
                  start: dict | None = None, sufficient: bool = True):
    """The :class:`Model` and :class:`GroupedData` of an lme4 formula on ``data``.

    ``data``: a pandas DataFrame, a CSV path, or the name of a bundled dataset.
    ``sufficient``: Gaussian models are written on per-subject sufficient statistics (the
    same likelihood, faster); ``False`` gives the per-observation model.
    Returns ``(model, grouped_data, design)``.
    """
    from ._io import read_data

    fam = get_family(family)
    d = design(formula, read_data(data), categorical, na_action)
    _check_response(d, fam)
    _check_identifiable(d, fam)
    error = no_residual_dof(len(d.y), d.X.shape[1], fam)
    if error:
        raise ValueError(error)
    st = d.structure
    nll, report, ranef, global_nll = model_functions(fam, st.layout)
    theta0, beta0 = initial_values(d, fam, start)
    closed = sufficient and fam is GAUSSIAN_FAMILY
    n_levels = tuple(st.terms[i].factor.n_levels for i in st.layout.global_terms)
    beta_ls = ols(d.y, d.X)[0] if closed else None       # the statistics' beta0: least squares
    if closed and not st.n_global:
        nll, report, ranef = gaussian_stats_functions(st.layout)
        grouped = _stats_data(d, sufficient_statistics(d, beta_ls))
    model = Model(nll=nll, theta=theta0, beta=beta0, n_random=d.Z.shape[1],
                  report=report, ranef=ranef, beta_names=d.beta_names, random_names=d.random_names,
                  group=d.group, family=fam.name, formula=formula, signs=lambda_signs(st.layout, n_levels),
                  random_terms=st.term_names(), n_global=st.n_global, global_nll=global_nll,
                  global_names=st.global_names)
    if not closed or st.n_global:
        arrays = {"y": d.y, "X": d.X, "Z": d.Z, **st.global_Z}
        if fam.name == "binomial":
            arrays["trials"] = d.trials if d.trials is not None else np.ones_like(d.y)
        grouped = group_data(arrays, np.asarray(d.groups, dtype=object), levels=list(d.groups.categories),
                             **({"global_index": st.global_index, "n_global": st.n_global} if st.n_global else {}))
    if closed and st.n_global:
        nll, report, ranef, global_nll = gaussian_crossed_stats_functions(st.layout, n_levels)
        theta = dict(model.theta)
        theta["lambda"] = _global_start(d, theta0, beta_ls)
        model = replace(model, nll=nll, global_nll=global_nll, theta=theta)
        grouped = _crossed_stats_data(d, grouped, beta_ls)
    return model, grouped, d


def _global_start(d: Design, theta0: dict, beta_ls: np.ndarray) -> np.ndarray:
    """``theta["lambda"]`` with each global (crossed) term's entries at the moment estimate
    of that term alone (``_gaussian.moment_start`` with its factor as the subjects), the
    residual variance within its levels as ``sigma^2``; the local terms' entries as in
    ``theta0`` (the closed form estimates those itself). Newton's method converges in a few
    steps from there, where lme4's start (``Lambda = I``) can lie where the nll is not convex
    in the crossed terms' parameters. ``beta_ls``: the least-squares ``beta``."""
    st = d.structure
    lam = np.array(theta0["lambda"], dtype=float)
    r = d.y - d.X @ beta_ls
    for i in st.layout.global_terms:
        t, lay = st.terms[i], st.layout.terms[i]
        f0 = st.layout.offsets[i][0]
        stats = subject_totals(t.factor.codes, t.factor.n_levels, r, d.X, t.Z)
        one = LambdaMap(RandomLayout((TermLayout(lay.blocks, 1),)))
        lam[f0:f0 + lay.n_free] = np.asarray(_moment_start(one, stats, jnp.asarray(lam[f0:f0 + lay.n_free])))
    return lam


_moment_start = jax.jit(moment_start, static_argnums=0)


def _stats_data(d: Design, stats: dict) -> GroupedData:
    """Per-subject statistics as grouped data: one row per subject, standing for its rows."""
    levels = list(d.groups.categories)
    return group_data(stats, np.asarray(levels, dtype=object), levels=levels, observations=len(d.y))


def _crossed_stats_data(d: Design, grouped: GroupedData, beta0: np.ndarray) -> GroupedData:
    """The statistics of a Gaussian model with global terms (:func:`sufficient_statistics`
    and ``_formula_nll.crossed_totals``, about ``beta0``, least squares), from its
    per-observation data ``grouped``: local slots and the global index as ``grouped`` has them."""
    stats = sufficient_statistics(d, beta0)
    r = grouped.arrays["y"] - grouped.arrays["X"] @ beta0
    st = d.structure
    names, rows_global = {}, {}
    for j, i in enumerate(st.layout.global_terms):
        for e in range(len(st.terms[i].names)):
            names[(f"Zg{j}", e)] = f"v{j}_{e}"
            rows_global[(j, e)] = (st.global_index[f"v{j}_{e}"], st.global_Z[f"Zg{j}"][:, e])
    per_subject, shared = crossed_totals(grouped, r * grouped.mask, names, d.X, rows_global)
    stats.update(per_subject)
    return replace(_stats_data(d, stats), local=grouped.local, n_global=grouped.n_global, shared=shared)


#: Starts besides the default for a family whose likelihood can have several optima (not
#: log-concave: Student-t): ``(factor on the default scale, df)``. The default start is
#: the scale from the median absolute residual and ``df = 10``. On 16 contaminated
#: sleepstudy datasets (tests/reference/student_t_contaminated.json) the default start alone
#: missed glmmTMB's best Laplace optimum once (by 0.24); these found it.
EXTRA_STARTS = ((3.0, 100.0), (1.0, 1.0), (1.0 / 3.0, 3.0))
#: Quadrature points per random effect when every Laplace fit breaks down (see below), in
#: the order tried: a rule is accepted at its optimum when the next one agrees with it
#: there to :data:`FALLBACK_TOL`; the last one only checks.
FALLBACK_AGQ = (41, 61, 81)
#: nll units: the largest difference between successive rules at which a fallback is accepted.
FALLBACK_TOL = 1e-4
#: A Student-t ``df`` above this is reported as at its boundary (the Gaussian limit).
DF_BOUNDARY = 1e4


def _starts(model) -> list:
    """``(model, start)`` for the default start and each of :data:`EXTRA_STARTS`."""
    theta = model.theta
    if not ("log_sigma" in theta and "log_df" in theta):
        return [(model, None)]
    sigma, df = float(np.exp(theta["log_sigma"])), float(np.exp(theta["log_df"]))
    out = [(model, {"sigma": sigma, "df": df})]
    for factor, nu in EXTRA_STARTS:
        new = dict(theta, log_sigma=np.asarray(np.log(factor * sigma)), log_df=np.asarray(np.log(nu)))
        out.append((replace(model, theta=new), {"sigma": factor * sigma, "df": nu}))
    return out


def _quietly(fit, *args, **kwargs):
    """``(result, warnings it raised)`` without showing them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AdmbjaxWarning)
        result = fit(*args, **kwargs)
    return result, caught


def _usable(result) -> bool:
    return bool(result.converged and result.extra["laplace_reliable"])


def _quadrature_check(model, grouped, result, n_agq: int, options: dict) -> float:
    """``nll`` at ``result``'s parameters by ``n_agq`` points minus ``result.nll``."""
    objective = make_objective(model, grouped, "ML", **dict(options, n_agq=n_agq))
    return float(objective(result.x)) - result.nll


def _with_note(result, notes, trials, converged=None):
    extra = dict(result.extra, starts=tuple(trials))
    messages = tuple(notes) + tuple(m for m in result.messages if m not in notes)
    out = replace(result, messages=messages, extra=extra)
    return out if converged is None else replace(out, converged=converged)


def _fit_with_fallback(model, grouped, method, options, family: Family | None = None, multistart: bool = True):
    """Fit; for a family whose likelihood is not log-concave, from several starts, and by
    adaptive quadrature where every Laplace fit breaks down.

    For Student-t errors with gross outliers the likelihood has several optima, and the
    Laplace approximation has jumps (where a subject's global inner mode switches between
    the bulk of its observations and its outliers) and spikes (near a mode that turns flat,
    where it goes to minus infinity): glmmTMB reports "false convergence" from many starts.
    So where the fit from the default start does not converge to a reliable Laplace optimum,
    it is made from :data:`EXTRA_STARTS` too (``multistart``: the caller gave no ``start``),
    sharing one compiled program, and the converged fit with the highest likelihood whose
    Laplace approximation is reliable wins (``extra["starts"]`` lists them all). On the 32
    contaminated cases of the tests, a default start that converges is at the best optimum.

    Where none converges and adaptive Gauss-Hermite quadrature is available (ML, at most two
    random effects), the fit is redone from the default start by quadrature: the true
    marginal likelihood has no such jumps or spikes. On these data its integrands have heavy
    shoulders (the 7-point rule was off by 0.03-0.6 in the nll at its optimum), so the rules
    of :data:`FALLBACK_AGQ` are tried in turn, each accepted only where the next agrees with it
    to :data:`FALLBACK_TOL` at its optimum; otherwise the result is not converged, and says so.
    """
    family = get_family(model.family) if family is None else family
    if "n_agq" in options or family.log_concave:
        return fit(model, grouped, method, **options)
    starts = _starts(model) if multistart else [(model, None)]
    runs = [(_quietly(fit, starts[0][0], grouped, method, **options), starts[0][1])]
    if not _usable(runs[0][0][0]):          # the other starts where the default one fails
        runs += [(_quietly(fit, m, grouped, method, **options), start) for m, start in starts[1:]]
    trials = [dict(start or {}, loglik=r.loglik, converged=_usable(r), n_agq=1) for (r, _), start in runs]
    t_compile = sum(r.time_compile for (r, _), _ in runs)
    t_fit = sum(r.time_fit for (r, _), _ in runs)
    usable = [(r, caught) for (r, caught), _ in runs if _usable(r)]
    notes = []
    if usable:
        result, caught = max(usable, key=lambda rc: rc[0].loglik)
    else:
        (result, caught), _ = runs[0]
        if len(runs) > 1:
            notes.append(f"the Laplace fits from {len(runs)} starts did not converge (max|grad| of the default "
                         f"start's {result.max_abs_grad:.3g})")
    if usable or method.upper() != "ML" or model.n_random > 2:
        result = _with_note(_flag_df(result), notes, trials)
        _warn(caught, result, notes)
        return replace(result, time_compile=t_compile, time_fit=t_fit)
    broke = (f"Laplace approximation broke down (max|grad| {result.max_abs_grad:.3g}, converged "
             f"{result.converged}{', from every start' if len(runs) > 1 else ''})")
    retry, accurate, error, n_agq = None, False, np.inf, FALLBACK_AGQ[0]
    for n_agq, n_check in zip(FALLBACK_AGQ, FALLBACK_AGQ[1:]):
        start_model = model if retry is None else replace(model, theta=retry.theta, beta=np.asarray(retry.beta))
        retry, caught = _quietly(fit, start_model, grouped, method, **dict(options, n_agq=n_agq))
        t_compile, t_fit = t_compile + retry.time_compile, t_fit + retry.time_fit
        error = _quadrature_check(model, grouped, retry, n_check, options) if retry.converged else np.inf
        trials.append(dict(loglik=retry.loglik, converged=retry.converged, n_agq=n_agq, check=error))
        accurate = retry.converged and abs(error) <= FALLBACK_TOL
        if accurate or not retry.converged:
            break
    note = f"{broke}; refitted by adaptive Gauss-Hermite quadrature, n_agq = {n_agq}"
    if retry.converged and not accurate:
        note += (f", which is not accurate at its optimum: the nll differs by {error:.2g} with n_agq = {n_check} "
                 "(a conditional density of the random effects with several modes or heavy shoulders)")
    retry = _with_note(_flag_df(retry), [note], trials, converged=bool(retry.converged and accurate))
    _warn(caught, retry, [note])
    return replace(retry, extra=dict(retry.extra, quadrature_check=error),
                   time_compile=t_compile, time_fit=t_fit)


def _warn(caught, result, notes) -> None:
    """Show the chosen fit's warnings, then ``notes`` and the messages ``_flag_df`` added."""
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=4)
    shown = {str(w.message) for w in caught}
    for m in list(notes) + [m for m in result.messages if m not in notes and m not in shown]:
        warnings.warn(m, AdmbjaxWarning, stacklevel=4)


def _flag_df(result):
    """``result`` with a message (shown by :func:`_warn`) where a converged
    Student-t ``df`` is above :data:`DF_BOUNDARY` (the likelihood rising towards the Gaussian
    limit, ``df`` = infinity), and not converged where ``df`` is not finite."""
    report = result.report if isinstance(result.report, dict) else {}
    if "df" not in report:
        return result
    df = float(np.asarray(report["df"]))
    if not np.isfinite(df):
        msg = f"Student-t df is not finite ({df}): the fit failed"
        return replace(result, converged=False, messages=result.messages + (msg,))
    if result.converged and df > DF_BOUNDARY:
        msg = (f"Student-t df = {df:.3g} is at its boundary (df -> infinity, the Gaussian limit): the residuals "
               "have no heavier tails than a Gaussian's; family='gaussian' fits the same model")
        return replace(result, messages=result.messages + (msg,))
    return result


def default_method(family) -> str:
    """The method a fit uses unless told: REML for the Gaussian family (lme4's ``lmer``),
    ML for every other (``glmer`` and ``glmmTMB`` fit GLMMs by maximum likelihood)."""
    return "REML" if get_family(family).name == "gaussian" else "ML"


#: Inverse links: the conditional mean of the response from the linear predictor.
INVERSE_LINKS = {"identity": lambda eta: eta, "log": np.exp, "logit": lambda eta: 0.5 * (1.0 + np.tanh(0.5 * eta))}


def linear_predictor(result, design: Design, family: Family | None = None) -> np.ndarray:
    """``eta`` of every observation at the conditional modes, in row order: ``X beta``, the
    subject's local part ``Z b_subject`` and each global term's ``Z_t b_t[level]``."""
    code = np.asarray(design.groups.codes)
    eta = design.X @ result.beta + np.sum(design.Z * result.b[code], axis=1)
    st = getattr(design, "structure", None)      # None: a design without global terms
    if st is None or not st.n_global:
        return eta
    for j, (level_b, t) in enumerate(global_effects(result, st, family)):
        eta = eta + np.sum(st.global_Z[f"Zg{j}"] * level_b[t.factor.codes], axis=1)
    return eta


def global_effects(result, st, family: Family | None = None) -> list:
    """``[(b [levels, k], term)]`` of each global term: ``s Lambda_t v`` at the conditional
    modes ``v`` (``result.extra["v"]``); ``family``: the fit's (default: by its name)."""
    fam = get_family(result.family) if family is None else family
    scale = float(np.asarray(fam.scale(result.theta)))
    lam = np.asarray(result.theta["lambda"])
    v, out, start = np.asarray(result.extra["v"]), [], 0
    for i in st.layout.global_terms:
        t = st.terms[i]
        k, n = len(t.names), t.factor.n_levels
        V = v[start:start + k * n].reshape(n, k)
        out.append((scale * V @ np.asarray(st.layout.term_lambda(lam, i)).T, t))
        start += k * n
    return out


def ranef_tables(result, design: Design, family: Family | None = None) -> dict:
    """lme4's ``ranef(m)``: for each grouping factor (lme4's order), a DataFrame of the
    conditional modes of its random effects on the reporting scale, one row per level (in
    level order), one column per effect of its terms (a ``||`` term's pieces side by side).
    The subject's own effects and those of factors nested in it come from ``result.b``
    (the subject's slots), a crossed factor's from the global modes (:func:`global_effects`)."""
    st = design.structure
    columns, values = {}, {}
    glob = iter(global_effects(result, st, family) if st.n_global else ())
    offset = 0
    for i, t in enumerate(st.terms):
        f, k, lay = t.factor, len(t.names), st.layout.terms[i]
        if lay.is_global:
            b = next(glob)[0]
        elif f is st.subject:
            b = result.b[:, offset:offset + k]
        else:
            slot, _ = _reterms.slots_within(f, st.subject)
            first = np.unique(f.codes, return_index=True)[1]       # a row of each level
            b = result.b[st.subject.codes[first][:, None], offset + slot[first][:, None] * k + np.arange(k)]
        offset += 0 if lay.is_global else k * lay.slots
        columns.setdefault(f.name, []).extend(t.names)
        values.setdefault(f.name, []).append(b)
    return {f.name: pd.DataFrame(np.concatenate(values[f.name], axis=1), columns=columns[f.name],
                                 index=pd.Index(list(f.levels), name=f.name)) for f in st.factors}


def conditional_residuals(result, design: Design, grouped=None, family=None, scaled: bool = False):
    """Residuals of every observation, in row order, at the conditional modes: on the
    response scale, ``y - mu`` with ``mu`` the inverse link of ``X beta + Z b_group``
    (lme4's ``residuals(m, "response")``; for a binomial response the proportion ``y/n - p``
    with ``n`` the trials, as lme4 gives it for ``cbind``). ``scaled``: Pearson residuals,
    lme4's ``residuals(m, "pearson", scaled = TRUE)`` (the summary's "Scaled residuals"):
    divided by the SD of the response given the random effects (``sigma`` for Gaussian and
    Student-t: ``(y - mu) / sigma``; ``sqrt(mu)`` Poisson; ``sqrt(p (1 - p) / n)`` binomial).
    ``family``: the fit's :class:`Family` (default: the one named ``result.family``).
    ``None`` where the family's inverse link (or, for ``scaled``, its variance) is unknown."""
    family = get_family(result.family) if family is None else family
    inverse = INVERSE_LINKS.get(family.link)
    if inverse is None:
        return None
    eta = linear_predictor(result, design, family)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):   # mu = 0 or 1: +-inf, as in R
        y, mu = design.y, inverse(eta)
        trials = None
        if family.name == "binomial":
            trials = design.trials if design.trials is not None else np.ones_like(y)
            y = y / trials
        resid = y - mu
        if not scaled:
            return resid
        if "log_sigma" in family.dispersion and result.sigma:
            return resid / result.sigma
        if family.name == "poisson":
            return resid / np.sqrt(mu)
        if family.name == "binomial":
            return resid / np.sqrt(mu * (1.0 - mu) / trials)
    return None


#: A fitted mean within this of 0 (or a probability within it of 1) is numerically 0 or 1,
#: as R's ``glm.fit`` judges it (``10 * .Machine$double.eps``).
NUMERICALLY_ZERO = 10 * np.finfo(float).eps


def separation(result, design: Design, family: Family) -> str | None:
    """The warning glm and lme4 users know where fitted probabilities (binomial) or means
    (Poisson) are numerically 0 or 1: complete or quasi-complete separation, where some
    fixed effects run off to infinity and the "estimates" and their SEs mean nothing; or
    ``None``. The coefficients named are those moving the linear predictor by more than 10
    over the range of their column."""
    if family.name not in ("binomial", "poisson"):
        return None
    eta = linear_predictor(result, design, family)
    with np.errstate(over="ignore"):
        mu = np.exp(eta) if family.name == "poisson" else 1.0 / (1.0 + np.exp(-eta))
    bad = (mu < NUMERICALLY_ZERO) | ((mu > 1 - NUMERICALLY_ZERO) if family.name == "binomial" else False)
    if not np.any(bad):
        return None
    span = np.ptp(design.X, axis=0)
    span = np.where(span > 0, span, np.abs(design.X).max(axis=0))       # the intercept: its value
    large = [n for n, b, s in zip(design.beta_names, result.beta, span) if abs(b) * s > 10]
    what = "probabilities numerically 0 or 1" if family.name == "binomial" else "means numerically 0"
    return (f"fitted {what} occurred in {int(bad.sum())} of {len(bad)} observations: complete or quasi-complete "
            f"separation, so fixed effects run off to infinity ({', '.join(large) or 'see the estimates'}); their "
            "estimates and standard errors are meaningless: the model did not converge to a maximum")


@scoped
def fit_formula(formula: str, data, family="gaussian", method: str | None = None, categorical=(),
                na_action: str = "fail", start: dict | None = None, encoding: str = "utf-8", **fit_options):
    """Fit an lme4-style formula: ``fit_formula("Reaction ~ Days + (Days | Subject)", df)``.

    Args:
      formula: ``response ~ fixed + (expr | group)``; ``(expr || group)`` for uncorrelated
        random effects; ``cbind(successes, failures)`` as response for binomial trials.
      data: a pandas DataFrame, a CSV path, or a bundled dataset's name (``"sleepstudy"``).
      family: ``"gaussian"``, ``"student_t"``, ``"poisson"``, ``"binomial"`` (or a
        :class:`Family`).
      method: ``"REML"`` or ``"ML"``; default (``None``) REML for the Gaussian family and ML
        for every other, as ``lmer``, ``glmer`` and ``glmmTMB`` do.
      categorical: numeric columns to treat as factors (R's ``factor()``); string columns
        and the grouping factor always are.
      na_action: ``"fail"`` (default) or ``"omit"`` to drop rows with missing values.
      start: natural-scale starting values, ``{"beta": [...], "sigma": s, "df": nu}``.
      encoding: the text encoding of a CSV file ``data`` (default UTF-8).
      fit_options: passed to :func:`admbjax.fit` (``gtol``, ``max_iter``, ...).

    The result's ``extra`` holds ``residuals`` (response scale) and ``scaled_residuals``
    (Pearson), see :func:`conditional_residuals`, and the fixed-effect columns ``dropped``.
    """
    from ._io import read_data
    from ._options import check_options

    check_options(fit_options, "fit_formula")
    fam = get_family(family)
    method = default_method(fam) if method is None else method
    model, grouped, d = formula_model(formula, read_data(data, encoding), fam, categorical, na_action, start)
    fit_options.setdefault("global_mode", not fam.log_concave)
    result = _fit_with_fallback(model, grouped, method, fit_options, fam, multistart=start is None)
    resid = conditional_residuals(result, d, grouped, fam)
    scaled = conditional_residuals(result, d, grouped, fam, scaled=True)
    extra = dict(result.extra, residuals=resid, scaled_residuals=scaled, dropped=d.dropped, link=fam.link,
                 groups={f.name: f.n_levels for f in d.structure.factors}, ranef=ranef_tables(result, d, fam))
    separated = separation(result, d, fam)
    if separated:
        warnings.warn(separated, AdmbjaxWarning, stacklevel=2)
        return replace(result, extra=extra, converged=False, status="complete or quasi-complete separation",
                       messages=result.messages + (separated,))
    return replace(result, extra=extra)
