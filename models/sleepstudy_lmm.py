"""sleepstudy: Reaction ~ Days + (Days | Subject), written by hand in the ADMB style.

One subject's negative log joint density, with spherical random effects u ~ N(0, I) and
b = sigma * Lambda u (lme4's parametrisation; Lambda lower triangular, its diagonal left
unconstrained so that a zero variance is an interior point):

    y_ij | u_i ~ N(x_ij' beta + z_ij' b_i, sigma^2),   b_i = sigma Lambda u_i.

Run:  python models/sleepstudy_lmm.py [--method REML|ML] [--json OUT.json]
"""

import argparse
import json

import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

import admbjax


def cholesky_factor(lam):
    """Lower-triangular Lambda from its three free entries."""
    return jnp.array([[lam[0], 0.0], [lam[1], lam[2]]])


def nll(theta, beta, u, data):
    sigma = jnp.exp(theta["log_sigma"])
    b = sigma * cholesky_factor(theta["lambda"]) @ u
    mu = data["X"] @ beta + data["Z"] @ b
    logpdf = norm.logpdf(data["y"], mu, sigma)  # the residual density
    return -jnp.sum(data["mask"] * logpdf) - jnp.sum(norm.logpdf(u))


def report(theta, beta):
    sigma = jnp.exp(theta["log_sigma"])
    L = sigma * cholesky_factor(theta["lambda"])
    return {"sigma": sigma, "G": L @ L.T}


def ranef(theta, beta, u):
    return jnp.exp(theta["log_sigma"]) * cholesky_factor(theta["lambda"]) @ u


def build(df=None):
    """The model and its grouped data (the bundled sleepstudy unless ``df`` is given)."""
    df = admbjax.datasets.load("sleepstudy") if df is None else df
    y = df["Reaction"].to_numpy(float)
    X = np.column_stack([np.ones(len(df)), df["Days"].to_numpy(float)])
    data = admbjax.group_data({"y": y, "X": X, "Z": X}, df["Subject"])
    beta0, *_ = np.linalg.lstsq(X, y, rcond=None)
    model = admbjax.Model(
        nll=nll,
        theta={"log_sigma": np.log(np.std(y)), "lambda": np.array([1.0, 0.0, 1.0])},
        beta=beta0,
        n_random=2,
        report=report,
        ranef=ranef,
        beta_names=("(Intercept)", "Days"),
        random_names=("(Intercept)", "Days"),
        group="Subject",
        family="gaussian",
        formula="Reaction ~ Days + (Days | Subject)",
    )
    return model, data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="REML", choices=["REML", "ML"])
    parser.add_argument("--json", help="write the fit as JSON to this path")
    args = parser.parse_args(argv)
    model, data = build()
    result = admbjax.fit(model, data, method=args.method)
    print(result.summary())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result.to_dict(), fh, indent=2)
    return result


if __name__ == "__main__":
    main()
