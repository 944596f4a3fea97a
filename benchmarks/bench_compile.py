"""Compile time against the size of the model: fixed effects p, random effects q, outer parameters.

For a user who edits a model and refits, the compile is the wait. Each row is one fit in a
fresh process with the compilation cache off (cold: every program is traced and compiled),
on simulated data of 50 groups x 10 observations; ``compile_s`` and ``fit_s`` are what the
fit reports (``time_compile``: trace, lower and compile; ``time_fit``: the run), and
``k`` is the number of outer parameters (variance parameters, plus beta for ML). There is
no peer column: lme4 and glmmTMB compile nothing per model (glmmTMB's C++ template is
compiled once, at install); their fit times for such data are in ``bench_scaling.py``.

Rows:
- ``formula p``: ``y ~ x1 + ... + xp + (1 | g)``, Gaussian (the closed form), REML and ML;
- ``factor L``: ``y ~ f + (1 | g)`` with an L-level factor (L - 1 + 1 fixed effects);
- ``slopes q``: ``y ~ x1 + x2 + x3 + (x1 + ... + x_{q-1} | g)``: q correlated random
  effects, q(q+1)/2 + 1 variance parameters;
- ``student_t p``: the Laplace engine on ``family="student_t"``, ML;
- ``models/<name>``: the gallery's hand-written models (the engine), REML and ML.

Run:  python benchmarks/bench_compile.py [--out benchmarks/compile.json]
About 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

ONE = r"""
import json, sys, time, warnings
import numpy as np, pandas as pd
warnings.simplefilter("ignore")
import admbjax
kind, size, method = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(1)
N, n = 50, 10
g = np.repeat(np.arange(N), n)
df = pd.DataFrame({"g": g})
family = "gaussian"
if kind.startswith("models/"):
    sys.path.insert(0, sys.argv[4])
    module = __import__(kind.split("/")[1])
    model, data = module.build()
    fit = admbjax.fit(model, data, method=method)
else:
    p = size if kind in ("formula", "student_t") else 3
    X = rng.normal(size=(N * n, p))
    for j in range(p):
        df[f"x{j + 1}"] = X[:, j]
    fixed = " + ".join(f"x{j + 1}" for j in range(p))
    random = "1"
    if kind == "factor":
        df["f"] = rng.integers(0, size, N * n).astype(str)
        fixed = "f"
    if kind == "slopes":
        random = " + ".join(["1"] + [f"x{j + 1}" for j in range(size - 1)])
    slopes = sum(rng.normal(size=N)[g] * X[:, j] for j in range(size - 1)) if kind == "slopes" else 0.0
    noise = rng.standard_t(4, N * n) if kind == "student_t" else rng.normal(size=N * n)
    df["y"] = X @ (0.1 * rng.normal(size=p)) + rng.normal(size=N)[g] + slopes + noise
    if kind == "student_t":
        family = "student_t"
    fit = admbjax.fit_formula(f"y ~ {fixed} + ({random} | g)", df, family=family, method=method)
print(json.dumps({"compile_s": fit.time_compile, "fit_s": fit.time_fit, "converged": bool(fit.converged),
                  "p": len(fit.beta_names), "q": len(fit.random_names), "k": len(fit.x)}))
"""

ROWS = ([("formula", p, m) for p in (2, 10, 20, 40, 60, 150) for m in ("REML", "ML")]
        + [("factor", levels, m) for levels in (5, 41) for m in ("REML", "ML")]
        + [("slopes", q, "REML") for q in (1, 2, 3, 4)]
        + [("student_t", p, "ML") for p in (2, 20)]
        + [(f"models/{name}", 0, m) for name in ("sleepstudy_lmm", "sleepstudy_t_lmm") for m in ("REML", "ML")])


def run_one(kind: str, size: int, method: str) -> dict:
    env = dict(os.environ, ADMBJAX_COMPILATION_CACHE="0", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", ONE, kind, str(size), method, str(ROOT / "models")],
                          capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {size} {method} failed:\n{proc.stderr[-3000:]}")
    return dict(kind=kind, size=size, method=method, **json.loads(proc.stdout.strip().splitlines()[-1]))


def table(rows) -> str:
    out = ["| model | method | p | q | k | compile s | fit s | converged |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["kind"] if r["kind"].startswith("models/") else f"{r['kind']} {r['size']}"
        out.append(f"| {name} | {r['method']} | {r['p']} | {r['q']} | {r['k']} | "
                   f"{r['compile_s']:.2f} | {r['fit_s']:.3f} | {r['converged']} |")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "compile.json"))
    args = parser.parse_args(argv)
    rows = []
    for kind, size, method in ROWS:
        rows.append(run_one(kind, size, method))
        print(rows[-1], flush=True)
    import jax

    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "jax": jax.__version__}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    Path(args.out).with_suffix(".md").write_text(table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
