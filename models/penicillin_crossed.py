"""Penicillin: diameter ~ 1 + (1 | plate) + (1 | sample), crossed, written by hand.

Every one of 6 penicillin samples was tested on each of 24 plates, so neither factor nests
in the other. The plates are the subjects (the factor with more levels); the samples are
*global* random effects ``v``, shared by all plates, with their own prior, added once.
Spherical random effects as lme4 writes them (``u, v ~ N(0, I)``):

    y_ij | u_i, v_j ~ N(mu + sigma lambda_p u_i + sigma lambda_s v_j, sigma^2).

The subject's nll receives its slice of ``v`` and ``data["sample"]`` indexing into it, as if
``v`` held every sample (``group_data``'s ``global_index``).

Run:  python models/penicillin_crossed.py [--method REML|ML] [--json OUT.json]
"""

import argparse
import json

import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

import admbjax


def nll(theta, beta, u, data, v):
    sigma = jnp.exp(theta["log_sigma"])
    b_plate = sigma * theta["lambda_plate"] * u[0]
    b_sample = sigma * theta["lambda_sample"] * v[data["sample"]]     # each row's sample
    mu = beta[0] + b_plate + b_sample
    return -jnp.sum(data["mask"] * norm.logpdf(data["y"], mu, sigma)) - jnp.sum(norm.logpdf(u))


def global_nll(theta, v):
    """The samples' prior: v ~ N(0, I), once for all plates."""
    return -jnp.sum(norm.logpdf(v))


def report(theta, beta):
    sigma = jnp.exp(theta["log_sigma"])
    return {"sigma": sigma, "sd_plate": sigma * jnp.abs(theta["lambda_plate"]),
            "sd_sample": sigma * jnp.abs(theta["lambda_sample"])}


def build(df=None):
    """The model and its grouped data (the bundled Penicillin unless ``df`` is given)."""
    df = admbjax.datasets.load("penicillin") if df is None else df
    y = df["diameter"].to_numpy(float)
    samples = sorted(df["sample"].unique())
    sample = df["sample"].map({s: j for j, s in enumerate(samples)}).to_numpy()
    data = admbjax.group_data({"y": y}, df["plate"], global_index={"sample": sample})
    model = admbjax.Model(
        nll=nll,
        theta={"log_sigma": np.log(np.std(y)), "lambda_plate": np.array(1.0), "lambda_sample": np.array(1.0)},
        beta=np.array([y.mean()]),
        n_random=1,
        n_global=len(samples),
        global_nll=global_nll,
        global_names=tuple(samples),
        report=report,
        beta_names=("(Intercept)",),
        random_names=("(Intercept)",),
        group="plate",
    )
    return model, data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="REML", choices=["REML", "ML"])
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    fit = admbjax.fit(*build(), method=args.method)
    print(fit.summary())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(fit.to_dict(), fh, indent=2)


if __name__ == "__main__":
    main()
