"""Where L-BFGS overtakes Newton's method: fit time against the number of outer parameters.

Newton's method (``admbjax.Newton``) takes a Hessian of ``2k + 1`` gradients per step for k
outer parameters (the engine's finite differences; the Gaussian closed form's alike);
``admbjax.LBFGS`` takes a gradient or a few per step and ends with a Newton polish for the
standard errors. The default (``_optimise.default_optimiser``) switches at
``_optimise.LBFGS_MIN_OUTER``; this script shows where the crossover lies.

Rows: ``y ~ x1 + ... + xp + (1 | g)`` by ML (k = p + 2 outer parameters: beta, lambda,
sigma), 50 groups x 10 observations, Gaussian (closed form) and Student-t (the Laplace
engine, k = p + 3). Each row is a fresh process with the cache off: ``compile_s`` is the
cold compile, ``fit_s`` the median of 3 warm fits. No peer column: the peers' optimisers are
fixed (lme4 profiles beta out; glmmTMB uses nlminb on TMB's gradient).

Run:  python benchmarks/bench_optimisers.py [--out benchmarks/optimisers.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

ONE = r"""
import json, sys, time, warnings
import numpy as np, pandas as pd
warnings.simplefilter("ignore")
import admbjax
p, family, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rng = np.random.default_rng(1)
N, n = 50, 10
g = np.repeat(np.arange(N), n)
X = rng.normal(size=(N * n, p))
df = pd.concat([pd.DataFrame({"g": g}), pd.DataFrame(X, columns=[f"x{j}" for j in range(p)])], axis=1)
noise = rng.standard_t(4, N * n) if family == "student_t" else rng.normal(size=N * n)
df["y"] = X @ (0.1 * rng.normal(size=p)) + rng.normal(size=N)[g] + noise
formula = "y ~ " + " + ".join(f"x{j}" for j in range(p)) + " + (1 | g)"
optimiser = admbjax.Newton() if name == "newton" else admbjax.LBFGS()
first = admbjax.fit_formula(formula, df, family=family, method="ML", optimiser=optimiser)
fits = [admbjax.fit_formula(formula, df, family=family, method="ML", optimiser=optimiser) for _ in range(3)]
print(json.dumps({"compile_s": first.time_compile, "fit_s": float(np.median([f.time_fit for f in fits])),
                  "k": len(first.x), "criterion": first.criterion, "converged": bool(first.converged),
                  "iterations": first.iterations}))
"""

ROWS = [("gaussian", p) for p in (10, 20, 40, 80, 150)] + [("student_t", p) for p in (10, 20, 40, 80)]


def run_one(family: str, p: int, name: str) -> dict:
    env = dict(os.environ, ADMBJAX_COMPILATION_CACHE="0", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", ONE, str(p), family, name], capture_output=True, text=True,
                          env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{family} p={p} {name} failed:\n{proc.stderr[-3000:]}")
    return dict(family=family, p=p, optimiser=name, **json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "optimisers.json"))
    args = parser.parse_args(argv)
    rows = []
    lines = ["| family | k | Newton compile s | Newton fit s | L-BFGS compile s | L-BFGS fit s | criterion diff |",
             "|---|---|---|---|---|---|---|"]
    for family, p in ROWS:
        newton, lbfgs = run_one(family, p, "newton"), run_one(family, p, "lbfgs")
        rows += [newton, lbfgs]
        lines.append(f"| {family} | {newton['k']} | {newton['compile_s']:.2f} | {newton['fit_s']:.3f} | "
                     f"{lbfgs['compile_s']:.2f} | {lbfgs['fit_s']:.3f} | "
                     f"{abs(newton['criterion'] - lbfgs['criterion']):.1e} |")
        print(lines[-1], flush=True)
    Path(args.out).write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
