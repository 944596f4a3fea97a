"""GLMM benchmark: admbjax vs glmmTMB (and lme4::glmer for Poisson), same CSV, same run, ML.

Models (N subjects x 10 observations, x ~ N(0, 1), numpy seed fixed per model and N)
  student_t  y ~ x + (x | g):  beta = (1, 0.5), random intercept/slope SD (1, 0.3), corr 0.2,
             errors 0.8 * t(df = 4)
  poisson    count ~ x + (1 | g):  beta = (0.5, 0.3), random intercept SD 0.7, log link

admbjax: ``admbjax.fit_formula(..., method="ML")``; the first call's ``time_compile`` and
``time_fit`` (and its wall time), then the median ``time_fit`` of 3 repeats, which reuse the
compiled program (steady state; ``time_compile`` is then 0).
Peers: ``Rscript benchmarks/glmm_peers.R CSV MODEL`` on the same CSV, timing the fitting call
only (median of up to 3 repeats; one when the first takes > 30 s). Skipped when ``Rscript`` is
not on PATH.

Compile time is cold: the script turns admbjax's persistent compilation cache off unless
``--disk-cache`` is given.

Run:  python benchmarks/bench_glmm.py [--n 10000] [--out benchmarks/glmm.json] [--disk-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Cold compile by default: admbjax turns on JAX's persistent compilation cache at import, which
# would turn "compile" into a disk load when an earlier run fitted the same shapes.
# --disk-cache keeps the cache (then compile s is what a returning user waits).
DISK_CACHE = "--disk-cache" in sys.argv
if not DISK_CACHE:
    os.environ["ADMBJAX_COMPILATION_CACHE"] = "0"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import admbjax  # noqa: E402

HERE = Path(__file__).resolve().parent
PEERS_R = HERE / "glmm_peers.R"
N_OBS = 10
REPEATS = 3
INSTALL_HINT = "apt-get install r-base-core r-cran-lme4 r-cran-glmmtmb r-cran-jsonlite"

MODELS = {
    "student_t": dict(formula="y ~ x + (x | g)", family="student_t"),
    "poisson": dict(formula="count ~ x + (1 | g)", family="poisson"),
}


def simulate_t(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sd, corr = np.array([1.0, 0.3]), 0.2
    G = np.diag(sd) @ np.array([[1.0, corr], [corr, 1.0]]) @ np.diag(sd)
    b = rng.multivariate_normal(np.zeros(2), G, size=n)
    g = np.repeat(np.arange(n), N_OBS)
    x = rng.standard_normal(n * N_OBS)
    e = 0.8 * rng.standard_t(4.0, size=n * N_OBS)
    y = 1.0 + 0.5 * x + b[g, 0] + b[g, 1] * x + e
    return pd.DataFrame({"g": g, "x": x, "y": y})


def simulate_poisson(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    b = 0.7 * rng.standard_normal(n)
    g = np.repeat(np.arange(n), N_OBS)
    x = rng.standard_normal(n * N_OBS)
    count = rng.poisson(np.exp(0.5 + 0.3 * x + b[g]))
    return pd.DataFrame({"g": g, "x": x, "count": count})


def fit_admbjax(model: str, csv: Path) -> dict:
    spec = MODELS[model]
    runs = []
    for _ in range(1 + REPEATS):
        t0 = time.perf_counter()
        r = admbjax.fit_formula(spec["formula"], str(csv), family=spec["family"], method="ML")
        wall = time.perf_counter() - t0
        runs.append((r, wall))
    first, first_wall = runs[0]
    rep = [r for r, _ in runs[1:]]
    last = rep[-1]
    out = dict(
        compile_s=first.time_compile,  # cold unless --disk-cache
        first_fit_s=first.time_fit,
        first_wall_s=first_wall,
        fit_s=statistics.median(r.time_fit for r in rep),
        fit_times=[r.time_fit for r in rep],
        wall_s=statistics.median(w for _, w in runs[1:]),
        repeat_compile_s=[r.time_compile for r in rep],
        logLik=float(last.loglik),
        fixef=dict(zip(last.beta_names, map(float, last.beta))),
        converged=bool(last.converged),
        status=last.status,
        iterations=int(last.iterations),
        max_abs_grad=float(last.max_abs_grad),
        sigma=None if last.sigma is None else float(last.sigma),
        df=None if last.df is None else float(last.df),
        G=None if last.G is None else np.asarray(last.G).tolist(),
    )
    loglik_spread = max(abs(r.loglik - last.loglik) for r, _ in runs)
    out["logLik_spread_over_repeats"] = float(loglik_spread)
    return out


def fit_peers(model: str, csv: Path) -> dict | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    proc = subprocess.run([rscript, str(PEERS_R), str(csv), model], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"glmm_peers.R failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")][-1]
    return json.loads(line)


def git_state() -> dict | None:
    """Commit and locally modified library files (the library is imported from the checkout)."""
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=HERE.parent, capture_output=True,
                                        text=True, check=True).stdout.strip()
        return dict(commit=run("rev-parse", "--short", "HEAD"),
                    modified=run("status", "--short", "admbjax").splitlines())
    except (OSError, subprocess.CalledProcessError):
        return None


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def ratio(v):
    return "-" if v is None else f"{v:.2f}x" if v < 10 else f"{v:.0f}x"


def row_summary(model: str, n: int, a: dict, p: dict | None) -> dict:
    tmb = p["glmmTMB"] if p else None
    glmer = p.get("glmer") if p else None
    row = dict(
        model=model, N=n, n_obs=n * N_OBS,
        admbjax_compile_s=a["compile_s"], admbjax_first_fit_s=a["first_fit_s"],
        admbjax_fit_s=a["fit_s"], glmmTMB_s=tmb and tmb["time"], glmer_s=glmer and glmer["time"],
        ratio_glmmTMB=tmb and tmb["time"] / a["fit_s"],
        ratio_glmer=glmer and glmer["time"] / a["fit_s"],
        ratio_glmmTMB_incl_compile=tmb and tmb["time"] / (a["compile_s"] + a["first_fit_s"]),
        logLik_admbjax=a["logLik"], logLik_glmmTMB=tmb and tmb["logLik"],
        logLik_glmer=glmer and glmer["logLik"],
        dlogLik_glmmTMB=tmb and a["logLik"] - tmb["logLik"],
        dlogLik_glmer=glmer and a["logLik"] - glmer["logLik"],
        df_admbjax=a["df"], df_glmmTMB=tmb and tmb.get("df"),
        sigma_admbjax=a["sigma"], sigma_glmmTMB=tmb and tmb.get("sigma"),
        converged_admbjax=a["converged"], converged_glmmTMB=tmb and tmb["converged"],
        converged_glmer=glmer and glmer["converged"],
    )
    if tmb:
        row["logLik_rel_diff_glmmTMB"] = abs(row["dlogLik_glmmTMB"]) / abs(tmb["logLik"])
    return row


def markdown(rows: list[dict]) -> str:
    head = ("| model | N | admbjax compile s | admbjax fit s (first) | admbjax fit s (steady) "
            "| glmmTMB s | glmer s | glmmTMB / admbjax | glmer / admbjax | logLik admbjax "
            "| logLik glmmTMB (diff) | logLik glmer (diff) | df admbjax / glmmTMB |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        d_t = "-" if r["logLik_glmmTMB"] is None else f"{r['logLik_glmmTMB']:.4f} ({r['dlogLik_glmmTMB']:+.1e})"
        d_g = "-" if r["logLik_glmer"] is None else f"{r['logLik_glmer']:.4f} ({r['dlogLik_glmer']:+.1e})"
        df = "-" if r["df_admbjax"] is None else f"{r['df_admbjax']:.4f} / {fmt(r['df_glmmTMB'], '.4f')}"
        lines.append(
            f"| {r['model']} | {r['N']:,} | {r['admbjax_compile_s']:.1f} | {r['admbjax_first_fit_s']:.3f} "
            f"| {r['admbjax_fit_s']:.3f} | {fmt(r['glmmTMB_s'])} | {fmt(r['glmer_s'])} "
            f"| {ratio(r['ratio_glmmTMB'])} | {ratio(r['ratio_glmer'])} | {r['logLik_admbjax']:.4f} | {d_t} | {d_g} | {df} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="subjects (10 observations each)")
    ap.add_argument("--out", type=Path, default=HERE / "glmm.json")
    ap.add_argument("--disk-cache", action="store_true",
                    help="keep admbjax's persistent compilation cache (default: off, cold compile)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = ap.parse_args(argv)

    have_r = shutil.which("Rscript") is not None
    if not have_r:
        print(f"Rscript not on PATH: skipping glmmTMB/glmer columns. Install with:\n  {INSTALL_HINT}")

    git = git_state()  # at the start: other work may change the checkout during the run
    rows, details = [], {}
    seed0 = 20240700 + int(round(np.log10(args.n)))
    with tempfile.TemporaryDirectory(prefix="admbjax_glmm_") as tmp:
        for k, model in enumerate(args.models):
            sim = simulate_t if model == "student_t" else simulate_poisson
            df = sim(args.n, seed0 + 100 * (model == "poisson"))
            csv = Path(tmp) / f"{model}_{args.n}.csv"
            df.to_csv(csv, index=False, float_format="%.17g")
            print(f"[{model}] N={args.n} ({len(df)} rows): admbjax ...", flush=True)
            a = fit_admbjax(model, csv)
            print(f"  compile {a['compile_s']:.1f}s, first fit {a['first_fit_s']:.3f}s, steady "
                  f"{a['fit_s']:.3f}s, logLik {a['logLik']:.6f}, converged {a['converged']}", flush=True)
            p = None
            if have_r:
                print(f"[{model}] peers (Rscript) ...", flush=True)
                t0 = time.perf_counter()
                p = fit_peers(model, csv)
                print(f"  done in {time.perf_counter() - t0:.0f}s wall: glmmTMB {p['glmmTMB']['time']:.2f}s"
                      + (f", glmer {p['glmer']['time']:.2f}s" if p.get("glmer") else ""), flush=True)
            rows.append(row_summary(model, args.n, a, p))
            details[model] = dict(admbjax=a, peers=p)

    table = markdown(rows)
    print()
    print(table)
    peers = next((d["peers"] for d in details.values() if d["peers"]), None)
    meta = dict(
        command="python benchmarks/bench_glmm.py " + " ".join(sys.argv[1:] if argv is None else argv),
        machine=dict(platform=platform.platform(), processor=platform.processor(), cpus=os.cpu_count(),
                     python=platform.python_version()),
        versions=dict(admbjax=getattr(admbjax, "__version__", None), jax=jax.__version__,
                      jax_backend=jax.default_backend(), numpy=np.__version__,
                      R=peers and peers["R"], glmmTMB=peers and peers["glmmTMB_version"],
                      lme4=peers and peers["lme4_version"]),
        peers_skipped=None if have_r else f"Rscript not on PATH ({INSTALL_HINT})",
        seed=seed0, n_obs_per_subject=N_OBS, repeats=REPEATS, git=git,
        persistent_compilation_cache=DISK_CACHE,
    )
    args.out.write_text(json.dumps(dict(meta=meta, rows=rows, details=details, table=table), indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
