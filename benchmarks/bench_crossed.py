"""Crossed random effects beside lme4, in the same run: compile, fit (steady state: the second
fit in the same process) and peak memory, each fit in a fresh child process.

Cases:
- ``insteval``: lme4's InstEval, ``y ~ service + (1 | s) + (1 | d) + (1 | dept:service)``
  (73,421 ratings; 2,972 students x 1,128 instructors), REML and ML;
- ``sim``: a simulated crossed design of 100,000 subjects x 2,000 items, 10 items per
  subject (1e6 observations), ``y ~ x + (1 | subj) + (1 | item)``, REML.

admbjax fits the formula (``admbjax.fit_formula``'s model): the Gaussian closed form, the
factor with the most levels as the subjects and the crossed factor's effects global, in the
border of the penalised least squares. lme4: ``benchmarks/crossed_peers.R`` (needs
``Rscript`` with lme4; Debian: r-base-core r-cran-lme4 r-cran-jsonlite), which also exports
InstEval. ``setup_s`` is admbjax's model building (formula, statistics, start), outside
``fit_s``; lme4's ``time_s`` is the whole ``lmer`` call.

Run:  python benchmarks/bench_crossed.py [--cases insteval sim] [--out benchmarks/crossed.json]
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

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

FORMULAS = {"insteval": "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)",
            "sim": "y ~ x + (1 | subj) + (1 | item)"}
METHODS = {"insteval": ("REML", "ML"), "sim": ("REML",)}

CHILD = r"""
import json, sys, time
import pandas as pd
import admbjax

csv, formula, method = sys.argv[1:4]
df = pd.read_csv(csv, dtype=str).astype({"y": float})
for c in ("service", "x"):
    if c in df:
        df[c] = df[c].astype(float)
t0 = time.perf_counter()
model, data, design = admbjax.formula_model(formula, df)
setup = time.perf_counter() - t0
first = admbjax.fit(model, data, method=method)
second = admbjax.fit(model, data, method=method)
hwm = [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
out = second.to_dict()
print(json.dumps({"setup_s": setup, "compile_s": first.time_compile, "fit_s": second.time_fit,
                  "first_fit_s": first.time_fit, "peak_mb": hwm, "criterion": second.criterion,
                  "converged": bool(second.converged), "iterations": int(second.iterations),
                  "beta": second.beta.tolist(),
                  "sd": {r["group"]: r["sdcor"] for r in out["varcorr"] if r["var2"] is None},
                  "subjects": design.group, "n_subjects": data.n_subjects, "n_global": model.n_global}))
"""


def simulate(path: str, n_subjects: int = 100_000, n_items: int = 2_000, per_subject: int = 10, seed: int = 1):
    """The ``sim`` case: each subject answers ``per_subject`` distinct random items;
    ``y = 1 + 0.5 x + b_subj + b_item + e`` with SDs 0.5, 0.3 and 1."""
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subjects), per_subject)
    item = np.concatenate([rng.choice(n_items, per_subject, replace=False) for _ in range(n_subjects)])
    x = rng.normal(size=subj.size)
    y = (1 + 0.5 * x + 0.5 * rng.normal(size=n_subjects)[subj] + 0.3 * rng.normal(size=n_items)[item]
         + rng.normal(size=subj.size))
    pd.DataFrame({"y": y, "x": x, "subj": [f"s{s}" for s in subj], "item": [f"i{i}" for i in item]}).to_csv(
        path, index=False, float_format="%.17g")


def run(cmd) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=7200,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["insteval", "sim"], choices=sorted(FORMULAS))
    parser.add_argument("--out", default=str(HERE / "crossed.json"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            csv = str(Path(tmp) / f"{case}.csv")
            if case == "insteval":
                subprocess.run(["Rscript", str(HERE / "crossed_peers.R"), "export", csv], check=True)
            else:
                simulate(csv)
            for method in METHODS[case]:
                ours = run([sys.executable, "-c", CHILD, csv, FORMULAS[case], method])
                lme4 = run(["Rscript", str(HERE / "crossed_peers.R"), "fit", csv, FORMULAS[case], method])
                row = {"case": case, "method": method, "formula": FORMULAS[case], "admbjax": ours, "lme4": lme4,
                       "speedup_steady": lme4["time_s"] / ours["fit_s"],
                       "speedup_with_setup": lme4["time_s"] / (ours["fit_s"] + ours["setup_s"]),
                       "memory_ratio": ours["peak_mb"] / lme4["peak_mb"],
                       "criterion_diff": ours["criterion"] - lme4["criterion"]}
                print(json.dumps(row), flush=True)
                rows.append(row)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version()}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
