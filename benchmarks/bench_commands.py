"""Whole commands, as a user waits for them: admbjax's command line beside lme4 and statsmodels.

Rows:
- ``sleepstudy``: a fresh process from start to printed summary. admbjax: ``python -m
  admbjax fit --data sleepstudy --formula "Reaction ~ Days + (Days | Subject)"``; lme4:
  ``Rscript -e 'library(lme4); print(summary(lmer(...)))'``.
- ``batch_sleepstudy``: B datasets of sleepstudy's shape (18 subjects x 10 days), simulated
  from sleepstudy's REML fit, one CSV; admbjax: ``fit ... --by rep --json OUT.jsonl``.
- ``batch_genes``: G "genes" sharing a design of 24 subjects x 4 observations (two under
  each condition), ``expr ~ condition + (1 | subject)``; ``fit ... --by gene --json ...``.

admbjax runs each command in fresh processes sharing a new persistent compilation cache:
once cold (compiling), then ``--repeats`` times warm (compiled code loaded from disk); the
cold and the median warm wall-clock times are reported with the compile and fit seconds the
fits report (wall times here vary by ~10% from run to run; lme4's Rscript sleepstudy is
likewise the median of ``--repeats`` runs). Batch peers are timed as the
issue says: lme4 (``benchmarks/batch_peers.R``) and statsmodels ``MixedLM`` fit the first
``--peer-fits`` datasets one by one (fitting calls only, after a warm-up fit), and the mean
time per fit is multiplied by the number of datasets. The REML criteria of those datasets are
compared with admbjax's.

lme4 needs ``Rscript`` (Debian: ``apt-get install r-base-core r-cran-lme4 r-cran-jsonlite``);
without it the lme4 columns are skipped, and the script says so.

Run:  python benchmarks/bench_commands.py [--datasets 10000] [--genes 20000]
          [--peer-fits 50] [--repeats 5] [--out benchmarks/commands.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SLEEP_FORMULA = "Reaction ~ Days + (Days | Subject)"
GENE_FORMULA = "expr ~ condition + (1 | subject)"
INSTALL_HINT = "apt-get install r-base-core r-cran-lme4 r-cran-jsonlite"


def simulate_sleepstudy(n_sets: int, seed: int = 1) -> pd.DataFrame:
    """``n_sets`` datasets of sleepstudy's design from its REML fit (lme4's simulate)."""
    import admbjax

    base = admbjax.datasets.load("sleepstudy")
    fit = admbjax.fit_formula(SLEEP_FORMULA, base)
    rng = np.random.default_rng(seed)
    days = base["Days"].to_numpy(float)
    subject = base["Subject"].astype("category").cat.codes.to_numpy()
    b = rng.multivariate_normal(np.zeros(2), fit.G, size=(n_sets, 18))            # [sets, 18, 2]
    mu = fit.beta[0] + fit.beta[1] * days
    y = mu + b[:, subject, 0] + b[:, subject, 1] * days + fit.sigma * rng.standard_normal((n_sets, len(days)))
    return pd.DataFrame({"Reaction": y.ravel(), "Days": np.tile(days, n_sets),
                         "Subject": np.tile(base["Subject"].astype(str).to_numpy(), n_sets),
                         "rep": np.repeat(np.arange(n_sets), len(days))})


def simulate_genes(n_genes: int, seed: int = 2) -> pd.DataFrame:
    """``n_genes`` responses of one design: 24 subjects x 4 observations, a random intercept
    per subject (SD 0.2 to 1 across genes), condition effects N(0, 0.5), residual SD 0.5."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(24), 4)
    condition = np.tile(["A", "A", "B", "B"], 24)
    sd_u = rng.uniform(0.2, 1.0, n_genes)
    effect = rng.normal(0.0, 0.5, n_genes)
    u = rng.standard_normal((n_genes, 24)) * sd_u[:, None]
    y = 5.0 + effect[:, None] * (condition == "B") + u[:, subject] + 0.5 * rng.standard_normal((n_genes, 96))
    return pd.DataFrame({"expr": y.ravel(), "condition": np.tile(condition, n_genes),
                         "subject": np.tile([f"s{i:02d}" for i in subject], n_genes),
                         "gene": np.repeat(np.arange(n_genes), 96)})


def run_admbjax(argv: list[str], cache: Path, out: Path | None) -> dict:
    """Run ``python -m admbjax`` in a fresh process: wall time, and the fits' own times."""
    env = dict(os.environ, ADMBJAX_COMPILATION_CACHE=str(cache))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "admbjax", *argv], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"admbjax {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    row = {"wall_s": wall}
    if out is not None:
        fits = [json.loads(line) for line in out.read_text().splitlines()]
        ok = [f for f in fits if "criterion" in f]
        row.update(compile_s=sum(f["time_s"]["compile"] for f in ok), fit_s=sum(f["time_s"]["fit"] for f in ok),
                   n_fits=len(ok), converged=sum(f["converged"] for f in ok),
                   criterion={str(f["by"]): f["criterion"] for f in ok})
    return row


def cold_and_warm(argv: list[str], tmp: Path, out: Path | None, repeats: int) -> dict:
    """One cold run, then ``repeats`` warm ones: the warm row is the run of median wall time
    (this machine's wall times vary by about 10% from run to run), with every wall time."""
    cache = Path(tempfile.mkdtemp(dir=tmp))
    cold = run_admbjax(argv, cache, out)
    warm = sorted((run_admbjax(argv, cache, out) for _ in range(repeats)), key=lambda r: r["wall_s"])
    return {"cold": cold, "warm": dict(warm[len(warm) // 2], walls_s=[r["wall_s"] for r in warm])}


def lme4_sleepstudy(rscript: str, repeats: int) -> dict:
    code = ("suppressMessages(library(lme4)); print(summary(lmer(Reaction ~ Days + (Days | Subject), "
            "sleepstudy, REML = TRUE)))")
    subprocess.run([rscript, "-e", code], capture_output=True, check=True)  # warm the file cache
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([rscript, "-e", code], capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
    return {"wall_s": float(np.median(walls)), "walls_s": sorted(walls)}


def lme4_loop(rscript: str, csv: Path, formula: str, by: str, n: int, tmp: Path) -> dict:
    out = tmp / f"lme4_{by}.json"
    subprocess.run([rscript, str(HERE / "batch_peers.R"), str(csv), formula, by, str(n), str(out)],
                   check=True, capture_output=True)
    return json.loads(out.read_text())


def statsmodels_loop(df: pd.DataFrame, by: str, n: int) -> dict:
    import statsmodels.formula.api as smf

    parts = [part for _, part in df.groupby(by, sort=True)][:n + 1]
    fit = lambda part: smf.mixedlm("Reaction ~ Days", part, groups=part["Subject"], re_formula="~Days").fit(reml=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(parts[0])                                                     # warm-up
        t0 = time.perf_counter()
        fits = [fit(part) for part in parts[1:]]
    return {"seconds_per_fit": (time.perf_counter() - t0) / len(fits), "n_timed": len(fits)}


def max_criterion_diff(admbjax_crit: dict, peer: dict) -> float | None:
    diffs = [abs(admbjax_crit[lev] - c) for lev, c in zip(peer["levels"], peer["criterion"]) if lev in admbjax_crit]
    return max(diffs) if diffs else None


def batch_row(name, df, formula, by, n_sets, tmp, opts) -> dict:
    csv = tmp / f"{name}.csv"
    df.to_csv(csv, index=False)
    out = tmp / f"{name}.jsonl"
    row = {"name": name, "datasets": n_sets, "rows": len(df), "formula": formula,
           "admbjax": cold_and_warm(["fit", "--data", str(csv), "--formula", formula, "--by", by, "--json", str(out)],
                                    tmp, out, opts.repeats)}
    crit = row["admbjax"]["warm"].pop("criterion")
    row["admbjax"]["cold"].pop("criterion")
    if opts.rscript:
        lme4 = lme4_loop(opts.rscript, csv, formula, by, opts.peer_fits, tmp)
        row["lme4"] = {"seconds_per_fit": lme4["seconds_per_fit"], "n_timed": lme4["n_timed"],
                       "loop_s": lme4["seconds_per_fit"] * n_sets, "max_criterion_diff": max_criterion_diff(crit, lme4)}
    if name == "batch_sleepstudy":
        sm = statsmodels_loop(df, by, opts.peer_fits)
        row["statsmodels"] = {"seconds_per_fit": sm["seconds_per_fit"], "n_timed": sm["n_timed"],
                              "loop_s": sm["seconds_per_fit"] * n_sets}
    return row


def ratio(peer, ours):
    return f"{peer / ours:.1f}x" if peer and ours else "-"


def table(rows) -> str:
    lines = ["| command | admbjax cold s (compile / fit) | admbjax warm s (compile / fit) | lme4 s | lme4 / admbjax warm "
             "| statsmodels s | statsmodels / admbjax warm | max criterion diff vs lme4 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a = r["admbjax"]
        cell = lambda s: (f"{s['wall_s']:.2f} ({s['compile_s']:.2f} / {s['fit_s']:.2f})" if "fit_s" in s
                          else f"{s['wall_s']:.2f}")
        lme4 = r.get("lme4", {})
        sm = r.get("statsmodels", {})
        lme4_s = lme4.get("loop_s", lme4.get("wall_s"))
        sm_s = sm.get("loop_s")
        what = r["name"] if "datasets" not in r else f"{r['name']} ({r['datasets']:,} fits, {r['rows']:,} rows)"
        diff = lme4.get("max_criterion_diff")
        lines.append(f"| {what} | {cell(a['cold'])} | {cell(a['warm'])} | {f'{lme4_s:.2f}' if lme4_s else '-'} "
                     f"| {ratio(lme4_s, a['warm']['wall_s'])} | {f'{sm_s:.1f}' if sm_s else '-'} "
                     f"| {ratio(sm_s, a['warm']['wall_s'])} | {f'{diff:.1e}' if diff is not None else '-'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=10000)
    ap.add_argument("--genes", type=int, default=20000)
    ap.add_argument("--peer-fits", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5, help="warm runs (and lme4 runs) of which the median is shown")
    ap.add_argument("--out", default=str(HERE / "commands.json"))
    opts = ap.parse_args()
    opts.rscript = shutil.which("Rscript")
    if not opts.rscript:
        print(f"Rscript not found: lme4 columns skipped (install: {INSTALL_HINT})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        row = {"name": "sleepstudy", "admbjax": cold_and_warm(
            ["fit", "--data", "sleepstudy", "--formula", SLEEP_FORMULA], tmp, None, opts.repeats)}
        if opts.rscript:
            row["lme4"] = lme4_sleepstudy(opts.rscript, opts.repeats)
        rows.append(row)
        print(json.dumps(row), flush=True)
        for name, df, formula, by, n in [
                ("batch_sleepstudy", simulate_sleepstudy(opts.datasets), SLEEP_FORMULA, "rep", opts.datasets),
                ("batch_genes", simulate_genes(opts.genes), GENE_FORMULA, "gene", opts.genes)]:
            rows.append(batch_row(name, df, formula, by, n, tmp, opts))
            print(json.dumps(rows[-1]), flush=True)
    md = table(rows)
    print(md)
    meta = {"machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=HERE).stdout.strip(), "rows": rows, "markdown": md}
    Path(opts.out).write_text(json.dumps(meta, indent=1))
    Path(opts.out).with_suffix(".md").write_text(md + "\n")
    print(f"wrote {opts.out} and {Path(opts.out).with_suffix('.md')}")


if __name__ == "__main__":
    main()
