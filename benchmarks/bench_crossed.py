"""Crossed random effects: lme4's InstEval, ``y ~ service + (1 | s) + (1 | d) +
(1 | dept:service)`` (73,421 ratings; 2,972 students x 1,128 instructors), admbjax's Laplace
engine beside lme4 in the same run, REML and ML: compile, fit (steady state: the second fit
in the same process) and peak memory, each fit in a fresh child process.

admbjax fits the hand-written model below (the formula front end does not take crossed
terms yet): the students are the subjects, the instructors and the 28 dept:service cells
are global random effects ``v`` (1,156), integrated through the border of the arrowhead
Hessian. lme4: ``benchmarks/crossed_peers.R`` (needs ``Rscript`` with lme4; Debian:
r-base-core r-cran-lme4 r-cran-jsonlite), which also exports the data.

Run:  python benchmarks/bench_crossed.py [--methods REML ML] [--out benchmarks/crossed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys, time
import numpy as np, pandas as pd
import jax.numpy as jnp
from jax.scipy.stats import norm
import admbjax

df = pd.read_csv(sys.argv[1], dtype={"s": str, "d": str, "dept": str})
method = sys.argv[2]
t0 = time.perf_counter()
d_levels = sorted(df["d"].unique())
cell = df["dept"] + ":" + df["service"].astype(str)
c_levels = sorted(cell.unique())
d_code = df["d"].map({k: i for i, k in enumerate(d_levels)}).to_numpy()
c_code = cell.map({k: i for i, k in enumerate(c_levels)}).to_numpy() + len(d_levels)
X = np.column_stack([np.ones(len(df)), df["service"].to_numpy(float)])
y = df["y"].to_numpy(float)
data = admbjax.group_data({"y": y, "X": X}, df["s"], global_index={"d": d_code, "cell": c_code})


def nll(theta, beta, u, data, v):
    sigma = jnp.exp(theta["log_sigma"])
    lam = theta["lambda"]
    mu = data["X"] @ beta + sigma * (lam[0] * u[0] + lam[1] * v[data["d"]] + lam[2] * v[data["cell"]])
    return -jnp.sum(data["mask"] * norm.logpdf(data["y"], mu, sigma)) - jnp.sum(norm.logpdf(u))


model = admbjax.Model(nll=nll, theta={"log_sigma": np.log(np.std(y)), "lambda": np.array([0.3, 0.3, 0.3])},
                      beta=np.linalg.lstsq(X, y, rcond=None)[0], n_random=1,
                      n_global=len(d_levels) + len(c_levels), global_nll=lambda theta, v: -jnp.sum(norm.logpdf(v)),
                      beta_names=("(Intercept)", "service1"))
setup = time.perf_counter() - t0
first = admbjax.fit(model, data, method=method)
second = admbjax.fit(model, data, method=method)
hwm = [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
sigma = float(second.report["sigma"]) if "sigma" in second.report else float(np.exp(second.theta["log_sigma"]))
lam = np.abs(second.theta["lambda"])
print(json.dumps({"setup_s": setup, "compile_s": first.time_compile, "fit_s": second.time_fit,
                  "first_fit_s": first.time_fit, "peak_mb": hwm, "criterion": second.criterion,
                  "converged": bool(second.converged), "beta": second.beta.tolist(),
                  "sd": {"s": sigma * lam[0], "d": sigma * lam[1], "dept:service": sigma * lam[2], "Residual": sigma},
                  "n_subjects": data.n_subjects, "local_width": int(data.local.shape[1]),
                  "n_max": int(data.shape[1])}))
"""


def run(cmd) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["REML", "ML"])
    parser.add_argument("--out", default=str(HERE / "crossed.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        csv = str(Path(tmp) / "insteval.csv")
        subprocess.run(["Rscript", str(HERE / "crossed_peers.R"), "export", csv], check=True)
        rows = []
        for method in args.methods:
            ours = run([sys.executable, "-c", CHILD, csv, method])
            lme4 = run(["Rscript", str(HERE / "crossed_peers.R"), "fit", csv, method])
            row = {"method": method, "admbjax": ours, "lme4": lme4,
                   "speedup_steady": lme4["time_s"] / ours["fit_s"],
                   "memory_ratio": ours["peak_mb"] / lme4["peak_mb"],
                   "criterion_diff": ours["criterion"] - lme4["criterion"]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version()}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
