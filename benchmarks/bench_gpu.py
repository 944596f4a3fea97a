"""The GPU check of issue #5, prepared to run as one command on a lent GPU machine.

The same code as on the CPU, the device being the only change: in float64 and in float32
(``ADMBJAX_X64=0``), each precision in its own process,

- sleepstudy REML (``fit_formula``): compile s, steady fit s (median of 5);
- a batch of ``--datasets`` sleepstudy-shaped datasets (``fit_formula_by``, chunks of
  ``--chunk`` lanes): compile s, fit s, fits a second;
- single fits of the scaling design (``y ~ x1 + x2 + (x1 | subject)``, 10 observations a
  subject) at ``--sizes`` subjects: compile s, fit s;

and the accuracy cost of float32: the largest relative difference from float64 in the
criterion and in the fixed effects, and how many fits float32 reports as converged (its
gradients stop at about 1e-4, above float64's tolerance of 1e-6, so float32 runs with
``--gtol32``, 1e-3 by default: without it every float32 fit runs to its iteration limit).
Writes ``--out`` (JSON) and the
table beside it (``.md``). The device is whatever JAX finds (``jax.devices()``, named in the
output); on a CPU it checks the script.

Run (GPU machine, in the repository root; about 3 minutes on a CPU at the defaults):
    python benchmarks/bench_gpu.py [--datasets 10000] [--sizes 100000 1000000] [--chunk 4096]
        [--gtol32 1e-3] [--out $OUT/gpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SLEEP_FORMULA = "Reaction ~ Days + (Days | Subject)"
SCALING_FORMULA = "y ~ x1 + x2 + (x1 | subject)"


def child(opts) -> dict:
    """One precision's runs, in this process (``ADMBJAX_X64`` set by the parent)."""
    sys.path.insert(0, str(HERE))
    import jax

    import admbjax
    from admbjax import _scope
    from bench_commands import simulate_sleepstudy
    from bench_scaling import simulate

    warnings.simplefilter("ignore")
    out = {"device": str(jax.devices()[0]), "device_kind": jax.devices()[0].device_kind,
           "x64": _scope.x64()}            # admbjax's precision (ADMBJAX_X64), scoped to its calls
    gtol = 1e-6 if _scope.x64() else opts.gtol32
    out["gtol"] = gtol
    first = admbjax.fit_formula(SLEEP_FORMULA, "sleepstudy", gtol=gtol)
    steady = [admbjax.fit_formula(SLEEP_FORMULA, "sleepstudy", gtol=gtol).time_fit for _ in range(5)]
    out["sleepstudy"] = {"compile_s": first.time_compile, "fit_s": float(np.median(steady)),
                         "criterion": first.criterion, "beta": first.beta.tolist(), "converged": first.converged}
    df = simulate_sleepstudy(opts.datasets)
    t0 = time.perf_counter()
    levels, results = admbjax.fit_formula_by(SLEEP_FORMULA, df, "rep", chunk_size=opts.chunk, gtol=gtol)
    wall = time.perf_counter() - t0
    fitted = [r for r in results if r is not None]
    fit_s = sum(r.time_fit for r in fitted)
    out["batch"] = {"datasets": opts.datasets, "wall_s": wall, "compile_s": sum(r.time_compile for r in fitted),
                    "fit_s": fit_s, "fits_per_s": len(fitted) / fit_s, "criterion": results.criterion.tolist(),
                    "beta": results.beta.tolist(), "converged": int(np.sum(results.converged))}
    out["scaling"] = []
    for n in opts.sizes:
        data = simulate(n)
        model, grouped, _ = admbjax.formula_model(SCALING_FORMULA, data)
        fit = admbjax.fit(model, grouped, "REML", gtol=gtol)
        again = admbjax.fit(model, grouped, "REML", gtol=gtol)
        out["scaling"].append({"N": n, "compile_s": fit.time_compile, "fit_s": again.time_fit,
                               "criterion": fit.criterion, "beta": fit.beta.tolist(), "converged": fit.converged})
    return out


def run_precision(x64: bool, opts, cache: Path) -> dict:
    env = dict(os.environ, ADMBJAX_X64="1" if x64 else "0", ADMBJAX_COMPILATION_CACHE=str(cache))
    args = [sys.executable, __file__, "--child", "--datasets", str(opts.datasets), "--chunk", str(opts.chunk),
            "--gtol32", str(opts.gtol32), "--sizes", *map(str, opts.sizes)]
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{'float64' if x64 else 'float32'} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-300))) if ok.any() else float("nan")


def table(f64: dict, f32: dict) -> str:
    lines = [f"Device: {f64['device']} ({f64['device_kind']}); gradient tolerance float64 {f64['gtol']:g}, "
             f"float32 {f32['gtol']:g}.", "",
             "| run | float64 compile s | float64 fit s | float32 compile s | float32 fit s | float32 / float64 fit "
             "| max rel diff criterion | max rel diff beta | converged float64 / float32 |",
             "|---|---|---|---|---|---|---|---|---|"]

    def row(name, a, b, n_conv_a, n_conv_b):
        lines.append(f"| {name} | {a['compile_s']:.2f} | {a['fit_s']:.4f} | {b['compile_s']:.2f} | {b['fit_s']:.4f} "
                     f"| {b['fit_s'] / a['fit_s']:.2f} | {_rel(b['criterion'], a['criterion']):.1e} "
                     f"| {_rel(b['beta'], a['beta']):.1e} | {n_conv_a} / {n_conv_b} |")

    row("sleepstudy", f64["sleepstudy"], f32["sleepstudy"], int(f64["sleepstudy"]["converged"]),
        int(f32["sleepstudy"]["converged"]))
    row(f"batch of {f64['batch']['datasets']:,} sleepstudy-shaped fits", f64["batch"], f32["batch"],
        f64["batch"]["converged"], f32["batch"]["converged"])
    for a, b in zip(f64["scaling"], f32["scaling"]):
        row(f"N = {a['N']:,} x 10", a, b, int(a["converged"]), int(b["converged"]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=10000)
    ap.add_argument("--sizes", type=int, nargs="*", default=[100000, 1000000])
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--gtol32", type=float, default=1e-3, help="gradient tolerance of the float32 fits")
    ap.add_argument("--out", default=str(HERE / "gpu.json"))
    ap.add_argument("--child", action="store_true")
    opts = ap.parse_args()
    if opts.child:
        print(json.dumps(child(opts)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        f64 = run_precision(True, opts, Path(tmp) / "cache64")
        print(f"float64 done on {f64['device']}", flush=True)
        f32 = run_precision(False, opts, Path(tmp) / "cache32")
    md = table(f64, f32)
    print(md)
    Path(opts.out).write_text(json.dumps({"float64": f64, "float32": f32, "markdown": md}))
    Path(opts.out).with_suffix(".md").write_text(md + "\n")
    print(f"wrote {opts.out} and {Path(opts.out).with_suffix('.md')}")


if __name__ == "__main__":
    main()
