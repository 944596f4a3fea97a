"""Scaling benchmark: REML fits of ``y ~ x1 + x2 + (x1 | subject)`` at N subjects x 10
observations, admbjax beside lme4 (and glmmTMB, statsmodels at the smaller sizes), same CSV,
same run; time and peak memory.

Design of ``shared/reference/scaling.json``: x1, x2 ~ N(0, 1), y = 1 + 0.5 x1 - 0.3 x2 + u0 +
u1 x1 + e, sd_u = (1, 0.5), corr 0.3, sigma 1 (numpy seed 20240600 + log10 N).

Every fit runs in a fresh child process that reads the CSV, so that its peak resident memory
(VmHWM) is its own. admbjax: ``admbjax.fit_formula`` (Gaussian: the closed-form likelihood on
per-subject sufficient statistics), run twice in separate processes sharing a new persistent
compilation cache: first cold (compile from scratch), then warm (compiled code loaded from
disk), each timed as read / setup (design and statistics) / compile / fit, and a second fit
in the warm process (steady state). lme4 and glmmTMB: ``benchmarks/scaling_peers.R``, the
fitting call only (as the reference times them). statsmodels: ``MixedLM.fit(reml=True)``.

R peers need ``Rscript`` with lme4 and glmmTMB (Debian: ``apt-get install r-base-core
r-cran-lme4 r-cran-glmmtmb r-cran-jsonlite``); without it their columns are skipped, and the
script says so.

Run:  python benchmarks/bench_scaling.py [--sizes 1000 10000 100000 1000000]
          [--glmmtmb-max 10000] [--statsmodels-max 10000] [--out benchmarks/scaling.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
FORMULA = "y ~ x1 + x2 + (x1 | subject)"
INSTALL_HINT = "apt-get install r-base-core r-cran-lme4 r-cran-glmmtmb r-cran-jsonlite"


def simulate(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(20240600 + int(round(math.log10(n))))
    sd, corr = np.array([1.0, 0.5]), 0.3
    G = np.diag(sd) @ np.array([[1.0, corr], [corr, 1.0]]) @ np.diag(sd)
    u = rng.multivariate_normal(np.zeros(2), G, size=n)
    g = np.repeat(np.arange(n), 10)
    x1, x2 = rng.standard_normal(10 * n), rng.standard_normal(10 * n)
    y = 1.0 + 0.5 * x1 - 0.3 * x2 + u[g, 0] + u[g, 1] * x1 + rng.standard_normal(10 * n)
    return pd.DataFrame({"subject": g, "x1": x1, "x2": x2, "y": y})


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_admbjax(csv: str, repeat: bool) -> dict:
    t0 = time.perf_counter()
    import admbjax
    t_import = time.perf_counter() - t0
    t = time.perf_counter()
    df = pd.read_csv(csv)
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    model, grouped, _ = admbjax.formula_model(FORMULA, df)
    t_setup = time.perf_counter() - t
    fit = admbjax.fit(model, grouped, "REML")
    steady = admbjax.fit(model, grouped, "REML").time_fit if repeat else None
    return {"import_s": t_import, "read_s": t_read, "setup_s": t_setup, "compile_s": fit.time_compile,
            "fit_s": fit.time_fit, "fit_steady_s": steady, "wall_s": time.perf_counter() - t0,
            "criterion": fit.criterion, "fixef": fit.beta.tolist(), "converged": fit.converged,
            "iterations": fit.iterations, "peak_rss_mb": peak_rss_mb()}


def child_statsmodels(csv: str) -> dict:
    import statsmodels.formula.api as smf
    df = pd.read_csv(csv)
    t = time.perf_counter()
    res = smf.mixedlm("y ~ x1 + x2", df, groups=df["subject"], re_formula="~x1").fit(reml=True)
    return {"time_s": time.perf_counter() - t, "criterion": -2 * res.llf, "fixef": res.fe_params.tolist(),
            "converged": bool(res.converged), "peak_rss_mb": peak_rss_mb()}


def run_child(args: list[str], env=None, timeout=1800) -> dict:
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_size(n: int, tmp: Path, opts) -> dict:
    df = simulate(n)
    csv = tmp / f"scaling_{n}.csv"
    df.to_csv(csv, index=False)
    row = {"N": n, "n_obs": len(df)}
    env = dict(os.environ, ADMBJAX_COMPILATION_CACHE=str(tmp / f"cache_{n}"))
    me = [sys.executable, str(Path(__file__).resolve())]
    print(f"[N={n}] admbjax cold cache ...", flush=True)
    row["admbjax_cold"] = run_child(me + ["--child-admbjax", str(csv)], env)
    print(f"[N={n}] admbjax warm cache ...", flush=True)
    row["admbjax_warm"] = run_child(me + ["--child-admbjax", str(csv), "--repeat"], env)
    if opts.rscript:
        for peer, limit in (("lme4", None), ("glmmTMB", opts.glmmtmb_max)):
            if limit is None or n <= limit:
                print(f"[N={n}] {peer} ...", flush=True)
                row[peer] = run_child([opts.rscript, str(HERE / "scaling_peers.R"), str(csv), peer])
    if n <= opts.statsmodels_max:
        print(f"[N={n}] statsmodels ...", flush=True)
        row["statsmodels"] = run_child(me + ["--child-statsmodels", str(csv)])
    return row


def _fmt(v, digits=3):
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(rows) -> str:
    head = ("| N | admbjax fit s (steady) | + read / setup s | compile s cold / warm cache | admbjax peak MB "
            "| lme4 fit s | lme4 peak MB | lme4 / admbjax (fit) | lme4 / admbjax (read + setup + fit) "
            "| glmmTMB s | statsmodels s | criterion admbjax - lme4 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cold, warm = r.get("admbjax_cold", {}), r.get("admbjax_warm", {})
        lme4, tmb, sm = r.get("lme4", {}), r.get("glmmTMB", {}), r.get("statsmodels", {})
        fit = warm.get("fit_steady_s") or warm.get("fit_s")
        whole = None if fit is None else warm["read_s"] + warm["setup_s"] + fit
        ratio = lambda a, b: None if a is None or b is None else f"{a / b:.1f}x"
        diff = None if "criterion" not in lme4 or "criterion" not in warm else f"{warm['criterion'] - lme4['criterion']:+.1e}"
        lines.append(
            f"| {r['N']:,} | {_fmt(fit)} | {_fmt(warm.get('read_s'), 2)} / {_fmt(warm.get('setup_s'), 2)} "
            f"| {_fmt(cold.get('compile_s'), 1)} / {_fmt(warm.get('compile_s'), 1)} | {_fmt(warm.get('peak_rss_mb'), 0)} "
            f"| {_fmt(lme4.get('time_s'))} | {_fmt(lme4.get('peak_rss_mb'), 0)} | {ratio(lme4.get('time_s'), fit) or '-'} "
            f"| {ratio(lme4.get('time_s'), whole) or '-'} | {_fmt(tmb.get('time_s'))} | {_fmt(sm.get('time_s'))} "
            f"| {diff or '-'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    ap.add_argument("--glmmtmb-max", type=int, default=10000)
    ap.add_argument("--statsmodels-max", type=int, default=10000)
    ap.add_argument("--out", default=str(HERE / "scaling.json"))
    ap.add_argument("--child-admbjax")
    ap.add_argument("--child-statsmodels")
    ap.add_argument("--repeat", action="store_true")
    opts = ap.parse_args()
    if opts.child_admbjax:
        print(json.dumps(child_admbjax(opts.child_admbjax, opts.repeat)))
        return
    if opts.child_statsmodels:
        print(json.dumps(child_statsmodels(opts.child_statsmodels)))
        return
    opts.rscript = shutil.which("Rscript")
    if not opts.rscript:
        print(f"Rscript not found: lme4 and glmmTMB columns skipped (install: {INSTALL_HINT})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in opts.sizes:
            rows.append(bench_size(n, Path(tmp), opts))
            print(json.dumps(rows[-1]), flush=True)
    md = table(rows)
    print(md)
    meta = {"machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=HERE).stdout.strip(), "formula": FORMULA, "rows": rows, "markdown": md}
    Path(opts.out).write_text(json.dumps(meta, indent=1))
    Path(opts.out).with_suffix(".md").write_text(md + "\n")
    print(f"wrote {opts.out} and {Path(opts.out).with_suffix('.md')}")


if __name__ == "__main__":
    main()
