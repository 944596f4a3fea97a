"""Engine benchmark: admbjax vs statsmodels MixedLM, same script, same data, REML.

Cases
  sleepstudy   Reaction ~ Days + (Days | Subject), the bundled data, models/sleepstudy_lmm.py
  sim N=...    y ~ x1 + x2 + (x1 | subject), N subjects x 10 observations, simulated as in
               shared/reference/scaling.json (numpy seed 20240600 + log10(N); R's data differ)

admbjax: compile time and fit time of a first fit (``result.time_compile``/``time_fit``), the
wall time of that first ``admbjax.fit`` call, then the median ``time_fit`` (and median wall
time of the whole ``fit`` call) over repeated fits, which reuse the compiled program.
statsmodels: wall time of ``mixedlm(...).fit(reml=True)`` (formula parsing included), median
of repeats. lme4: quoted from shared/reference (R 4.2.2, lme4 1.1.31, same 2-core machine type).

Compile times are cold: the script points admbjax's persistent compilation cache
(``ADMBJAX_COMPILATION_CACHE``) at a fresh temporary directory unless that variable is set, and
after each case a second Python process fits the same case again to time a compile served from
that on-disk cache (what a user sees the second time they run a script).

Run:  python benchmarks/bench_engine.py [--sizes 1000 10000] [--out benchmarks/engine.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# Cold compiles, and a cache the reload step can share: set before admbjax is imported.
if "ADMBJAX_COMPILATION_CACHE" not in os.environ:
    import atexit
    import shutil

    os.environ["ADMBJAX_COMPILATION_CACHE"] = _cache = tempfile.mkdtemp(prefix="admbjax-bench-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import jax
import numpy as np
import pandas as pd

import admbjax

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("ADMBJAX_REFERENCE", ROOT.parent / "shared" / "reference"))
LME4_COLUMN = "lme4 (reference, same machine type)"


# The simulated-data model is models/sleepstudy_lmm.py's, whose nll, report and ranef take any
# X and a two-column Z: here X = [1, x1, x2], Z = [1, x1].


def simulate(n_subjects: int, n_i: int = 10) -> pd.DataFrame:
    """N subjects x n_i observations; truth of shared/reference/scaling.json."""
    rng = np.random.default_rng(20240600 + int(round(np.log10(n_subjects))))
    sd_u, corr, sigma = np.array([1.0, 0.5]), 0.3, 1.0
    G = np.diag(sd_u) @ np.array([[1.0, corr], [corr, 1.0]]) @ np.diag(sd_u)
    b = rng.multivariate_normal(np.zeros(2), G, size=n_subjects)
    subject = np.repeat(np.arange(n_subjects), n_i)
    x1 = rng.standard_normal(n_subjects * n_i)
    x2 = rng.standard_normal(n_subjects * n_i)
    e = sigma * rng.standard_normal(n_subjects * n_i)
    y = 1.0 + 0.5 * x1 - 0.3 * x2 + b[subject, 0] + b[subject, 1] * x1 + e
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "subject": subject})


def build_sim(df: pd.DataFrame):
    y = df["y"].to_numpy(float)
    x1, x2 = df["x1"].to_numpy(float), df["x2"].to_numpy(float)
    X = np.column_stack([np.ones(len(df)), x1, x2])
    Z = X[:, :2]
    data = admbjax.group_data({"y": y, "X": X, "Z": Z}, df["subject"].to_numpy())
    beta0, *_ = np.linalg.lstsq(X, y, rcond=None)
    lmm = load_sleepstudy_module()
    model = admbjax.Model(
        nll=lmm.nll,
        theta={"log_sigma": np.log(np.std(y)), "lambda": np.array([1.0, 0.0, 1.0])},
        beta=beta0,
        n_random=2,
        report=lmm.report,
        ranef=lmm.ranef,
        beta_names=("(Intercept)", "x1", "x2"),
        random_names=("(Intercept)", "x1"),
        group="subject",
        family="gaussian",
        formula="y ~ x1 + x2 + (x1 | subject)",
    )
    return model, data


def load_sleepstudy_module():
    spec = importlib.util.spec_from_file_location("sleepstudy_lmm", ROOT / "models" / "sleepstudy_lmm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------------------
# Timers
# --------------------------------------------------------------------------------------------

def time_admbjax(model, data, repeats: int) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        first = admbjax.fit(model, data, method="REML")
        wall_first = time.perf_counter() - t0
    fits, walls = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = admbjax.fit(model, data, method="REML")
        walls.append(time.perf_counter() - t0)
        fits.append(r)
    return {
        "compile_s": first.time_compile,
        "first_fit_s": first.time_fit,
        "first_wall_s": wall_first,
        "fit_s_all": [r.time_fit for r in fits],
        "fit_s_median": statistics.median(r.time_fit for r in fits),
        "repeat_compile_s": [r.time_compile for r in fits],
        "wall_s_all": walls,
        "wall_s_median": statistics.median(walls),
        "iterations": first.iterations,
        "converged": first.converged,
        "status": first.status,
        "max_abs_grad": first.max_abs_grad,
        "singular": first.singular,
        "warnings": [str(w.message) for w in caught],
        "fixef": dict(zip(first.beta_names, first.beta.tolist())),
        "fixef_se": dict(zip(first.beta_names, first.beta_se.tolist())),
        "sigma": first.sigma,
        "G": np.asarray(first.G).tolist(),
        "criterion": first.criterion,
        "loglik": first.loglik,
    }


def time_statsmodels(df, formula, re_formula, group, repeats: int) -> dict:
    import statsmodels.formula.api as smf

    times, res, caught_all = [], None, []
    for _ in range(repeats):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            res = smf.mixedlm(formula, df, groups=df[group], re_formula=re_formula).fit(reml=True)
            times.append(time.perf_counter() - t0)
        caught_all = [f"{w.category.__name__}: {w.message}" for w in caught]
    k_fe = res.k_fe
    fe = res.fe_params
    return {
        "time_s_all": times,
        "time_s_median": statistics.median(times),
        "converged": bool(res.converged),
        "method": getattr(res, "method", None),
        "warnings": sorted(set(caught_all)),
        "fixef": {_r_name(k): float(v) for k, v in fe.items()},
        "fixef_se": {_r_name(k): float(v) for k, v in res.bse_fe.items()},
        "sigma": float(np.sqrt(res.scale)),
        "G": np.asarray(res.cov_re).tolist(),
        "llf_reml": float(res.llf),
        "criterion": -2.0 * float(res.llf),
        "k_fe": int(k_fe),
    }


def _r_name(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name


def breakdown(model, data) -> dict:
    """Steady-state cost of one objective value / gradient / value+grad+Hessian pass."""
    obj = admbjax.make_objective(model, data, method="REML")
    x = obj.x0
    out = {}
    for name, fn in (("value", obj), ("grad", obj.grad), ("value_grad_hessian", obj.hessian)):
        jax.block_until_ready(fn(x))  # compile
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x))
            ts.append(time.perf_counter() - t0)
        out[name + "_s"] = statistics.median(ts)
    # Python-side cost of a cached admbjax.fit call outside the compiled program
    t0 = time.perf_counter()
    admbjax.make_objective(model, data, method="REML")
    out["make_objective_s"] = time.perf_counter() - t0
    return out


def build_case(name: str):
    """``(model, data)`` of a case: ``"sleepstudy"`` or ``"sim N=..."``."""
    if name == "sleepstudy":
        return load_sleepstudy_module().build(admbjax.datasets.load("sleepstudy"))
    return build_sim(simulate(int(name.split("=")[1])))


def reload_one(name: str) -> dict:
    """Fit ``name`` once in this (fresh) process: the compile comes from the on-disk cache."""
    model, data = build_case(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        r = admbjax.fit(model, data, method="REML")
        wall = time.perf_counter() - t0
    return {"compile_s": r.time_compile, "fit_s": r.time_fit, "wall_s": wall}


def time_reload(name: str) -> dict | None:
    """Run :func:`reload_one` in a child process sharing the compilation cache."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--reload-case", name]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        print(f"warning: cache reload of {name} failed: {proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def library_state() -> dict:
    """The git commit of the checkout and any uncommitted change to admbjax/ (for provenance)."""
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "admbjax_uncommitted": (git("status", "--porcelain", "--", "admbjax") or "").splitlines()}


def lme4_reference() -> dict:
    ref = {}
    try:
        s = json.loads((REFERENCE / "sleepstudy.json").read_text())
        f = s["fits"]["lme4_lmer_REML"]
        ref["sleepstudy"] = {"time_s_median": f["time_s_median"], "criterion": f["criterion"],
                             "fixef": f["fixef"]}
    except (OSError, KeyError) as err:
        print(f"warning: no sleepstudy reference: {err}", file=sys.stderr)
    try:
        sc = json.loads((REFERENCE / "scaling.json").read_text())
        for r in sc["results"]:
            ref[f"sim-{r['N']}-{r['software']}"] = {"time_s_median": r["time_s_median"],
                                                    "criterion": r.get("REML_criterion")}
    except (OSError, KeyError) as err:
        print(f"warning: no scaling reference: {err}", file=sys.stderr)
    return ref


def agreement(a: dict, s: dict) -> dict:
    names = list(a["fixef"])
    diff = max(abs(a["fixef"][k] - s["fixef"][k]) for k in names)
    return {
        "max_abs_diff_fixef": diff,
        "criterion_admbjax": a["criterion"],
        "criterion_statsmodels": s["criterion"],
        "criterion_diff": a["criterion"] - s["criterion"],
        "loglik_diff": a["loglik"] - s["llf_reml"],
        "sigma_diff": a["sigma"] - s["sigma"],
        "max_abs_diff_G": float(np.max(np.abs(np.asarray(a["G"]) - np.asarray(s["G"])))),
    }


def run_case(name, n_groups, model, data, sm_args, lme4_s, args, verbose=True) -> dict:
    print(f"== {name}: {data.n_subjects} groups, {data.n_obs} obs", flush=True)
    a = time_admbjax(model, data, args.repeats)
    print(f"   admbjax: compile {a['compile_s']:.2f} s, first fit {a['first_fit_s']:.3f} s, "
          f"steady fit {a['fit_s_median']:.3f} s (wall {a['wall_s_median']:.3f} s), "
          f"{a['iterations']} outer iterations, converged={a['converged']}", flush=True)
    s = time_statsmodels(*sm_args, repeats=args.sm_repeats)
    print(f"   statsmodels: {s['time_s_median']:.3f} s, converged={s['converged']}", flush=True)
    row = {"dataset": name, "N": n_groups, "n_obs": data.n_obs, "admbjax": a, "statsmodels": s,
           "lme4_reference_s": lme4_s, "agreement": agreement(a, s)}
    row["ratio_fit_vs_statsmodels"] = a["fit_s_median"] / s["time_s_median"]
    row["ratio_wall_vs_statsmodels"] = a["wall_s_median"] / s["time_s_median"]
    if lme4_s:
        row["ratio_fit_vs_lme4"] = a["fit_s_median"] / lme4_s
        row["ratio_wall_vs_lme4"] = a["wall_s_median"] / lme4_s
    if args.reload:
        row["admbjax"]["cache_reload"] = rl = time_reload(name)
        if rl:
            print(f"   admbjax, new process, compile from the persistent cache: {rl['compile_s']:.2f} s "
                  f"(fit() wall {rl['wall_s']:.2f} s)", flush=True)
    if args.breakdown:
        row["breakdown"] = breakdown(model, data)
        print(f"   breakdown: {row['breakdown']}", flush=True)
    print(f"   agreement: {row['agreement']}", flush=True)
    return row


def markdown_table(rows) -> str:
    head = ("| dataset | N groups | n obs | admbjax compile s (cold) | compile s (disk cache, new process) "
            "| admbjax 1st call wall s | admbjax fit s (steady) "
            "| admbjax fit() wall s (steady) | outer iter | statsmodels s | " + LME4_COLUMN + " s "
            "| admbjax/statsmodels | admbjax/lme4 | max abs diff fixef | criterion diff (admbjax - sm) |")
    sep = "|" + "---|" * 15
    lines = [head, sep]
    for r in rows:
        a, s, g = r["admbjax"], r["statsmodels"], r["agreement"]
        lme4 = f"{r['lme4_reference_s']:.3f}" if r["lme4_reference_s"] else "n/a"
        rl = (f"{r['ratio_fit_vs_lme4']:.2f} ({r['ratio_wall_vs_lme4']:.2f})" if r["lme4_reference_s"] else "n/a")
        rc = f"{a['cache_reload']['compile_s']:.2f}" if a.get("cache_reload") else "n/a"
        lines.append(
            f"| {r['dataset']} | {r['N']} | {r['n_obs']} | {a['compile_s']:.2f} | {rc} | {a['first_wall_s']:.2f} "
            f"| {a['fit_s_median']:.3f} | {a['wall_s_median']:.3f} | {a['iterations']} "
            f"| {s['time_s_median']:.3f} | {lme4} "
            f"| {r['ratio_fit_vs_statsmodels']:.2f} ({r['ratio_wall_vs_statsmodels']:.2f}) | {rl} "
            f"| {g['max_abs_diff_fixef']:.2e} | {g['criterion_diff']:.2e} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000], help="simulated N (subjects)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "engine.json"))
    p.add_argument("--repeats", type=int, default=5, help="repeated admbjax fits (steady state)")
    p.add_argument("--sm-repeats", type=int, default=3, help="statsmodels repeats")
    p.add_argument("--no-sleepstudy", action="store_true")
    p.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                   help="skip timing the objective's value / gradient / Hessian passes")
    p.add_argument("--no-reload", dest="reload", action="store_false",
                   help="skip the second process that times a compile served from the disk cache")
    p.add_argument("--reload-case", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.reload_case:
        print(json.dumps(reload_one(args.reload_case)))
        return None

    load_start = os.getloadavg()
    if load_start[0] > 0.5:
        print(f"warning: load average {load_start[0]:.2f} at start: other processes compete for "
              f"the {os.cpu_count()} cores and the timings will be inflated", file=sys.stderr)
    state_start = library_state()
    ref = lme4_reference()
    rows = []
    if not args.no_sleepstudy:
        mod = load_sleepstudy_module()
        df = admbjax.datasets.load("sleepstudy")
        model, data = mod.build(df)
        lme4_s = ref.get("sleepstudy", {}).get("time_s_median")
        rows.append(run_case("sleepstudy", data.n_subjects, model, data,
                             (df, "Reaction ~ Days", "~Days", "Subject"), lme4_s, args))
        rows[-1]["lme4_reference_criterion"] = ref.get("sleepstudy", {}).get("criterion")
    for n in args.sizes:
        df = simulate(n)
        t0 = time.perf_counter()
        model, data = build_sim(df)
        t_prep = time.perf_counter() - t0
        lme4_s = ref.get(f"sim-{n}-lmer", {}).get("time_s_median")
        rows.append(run_case(f"sim N={n}", n, model, data,
                             (df, "y ~ x1 + x2", "~x1", "subject"), lme4_s, args))
        rows[-1]["admbjax"]["group_data_s"] = t_prep
        g = ref.get(f"sim-{n}-glmmTMB", {}).get("time_s_median")
        rows[-1]["glmmTMB_reference_s"] = g

    import statsmodels

    out = {
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                    "processor": cpu_model(), "python": platform.python_version(),
                    "jax": jax.__version__, "jax_backend": jax.default_backend(),
                    "devices": [str(d) for d in jax.devices()],
                    "statsmodels": statsmodels.__version__, "numpy": np.__version__,
                    "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                    "admbjax_compilation_cache": os.environ.get("ADMBJAX_COMPILATION_CACHE")},
        "notes": {"lme4": "time_s_median quoted from shared/reference (R 4.2.2, lme4 1.1.31, 2 cores); "
                          "simulated data there were drawn in R with another RNG, so criteria differ",
                  "ratios": "admbjax steady time_fit / peer; in parentheses admbjax steady wall of fit() / peer"},
        "library": {"start": state_start, "end": library_state()},
        "rows": rows,
        "table_markdown": markdown_table(rows),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print()
    print(out["table_markdown"])
    print(f"\nwritten {args.out}")
    return out


if __name__ == "__main__":
    main()
