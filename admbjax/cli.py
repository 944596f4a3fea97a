"""Command line: ``admbjax fit --data PATH --formula "y ~ x + (x | g)" [options]``.

Prints an lme4-like summary; ``--json OUT`` writes the JSON of a fit (README, "The JSON of a fit"). Errors
exit non-zero with a one-line message and no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ._scope import scoped


def _version() -> str:
    """The installed package's version, without importing JAX (as ``admbjax.__version__``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("admbjax")
    except PackageNotFoundError:     # run from a source tree that is not installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="admbjax", description="Laplace-approximation mixed models on JAX")
    parser.add_argument("--version", action="version", version=f"admbjax {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a mixed model given by an lme4-style formula")
    fit.add_argument("--data", required=True, help="CSV file, or the name of a bundled dataset (sleepstudy)")
    fit.add_argument("--formula", required=True, help='e.g. "Reaction ~ Days + (Days | Subject)"')
    fit.add_argument("--family", default="gaussian",
                     help="gaussian | student_t | poisson | binomial (default gaussian)")
    fit.add_argument("--method", default=None,
                     help="REML | ML (default REML for gaussian, ML for the other families, as lme4 and glmmTMB)")
    fit.add_argument("--encoding", default="utf-8",
                     help="text encoding of the CSV file (default utf-8; e.g. latin-1, cp1252)")
    fit.add_argument("--categorical", default="", help="comma-separated numeric columns to treat as factors")
    fit.add_argument("--na-action", default="fail", choices=["fail", "omit"],
                     help="rows with missing values: fail (default) or omit them with a message")
    fit.add_argument("--json", help="write the fit as JSON to this path (with --by: JSON lines, one per level)")
    fit.add_argument("--by", help="fit one model per level of this column, all in one compiled batch")
    return parser


def _fit(args) -> int:
    from ._formula import fit_formula
    from ._io import read_data

    categorical = [c.strip() for c in args.categorical.split(",") if c.strip()]
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):   # before the fit, not after
        raise ValueError(f"cannot write --json {args.json!r}: its directory does not exist")
    args.data = read_data(args.data, encoding=args.encoding)
    if args.by:
        return _fit_by(args, categorical)
    result = fit_formula(args.formula, args.data, family=args.family, method=args.method,
                         categorical=categorical, na_action=args.na_action)
    print(result.summary())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result.to_dict(), fh, indent=2)
    return 0


def _fit_by(args, categorical) -> int:
    import numpy as np

    from ._formula_batch import fit_formula_by

    levels, results = fit_formula_by(args.formula, args.data, args.by, family=args.family, method=args.method,
                                     categorical=categorical, na_action=args.na_action)
    by = [_plain(level) for level in levels]
    if args.json:
        with open(args.json, "w") as fh:
            fh.write("\n".join(results.json_lines([{"by": level} for level in by])) + "\n")
    fitted, criterion, converged, singular, beta = (results.fitted, results.criterion, results.converged,
                                                    results.singular, results.beta)
    lines = [f"{args.by:>12} {'criterion':>14} {'converged':>9} {'singular':>8}  fixed effects"]
    for k in np.flatnonzero(fitted):
        lines.append(f"{str(levels[k]):>12} {criterion[k]:14.6f} {str(converged[k]):>9} {str(singular[k]):>8}  "
                     + " ".join(f"{b:.5g}" for b in beta[k]))
    print("\n".join(lines))
    return 0


def _plain(value):
    return value.item() if hasattr(value, "item") else value


@scoped
def main(argv=None) -> int:
    """Entry point of the ``admbjax`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    import warnings

    from ._results import AdmbjaxWarning

    warnings.simplefilter("always", AdmbjaxWarning)
    warnings.formatwarning = lambda message, category, *a, **k: f"admbjax: {message}\n"
    try:
        return _fit(args)
    except BrokenPipeError:          # the reader went away (``| head``): :func:`run` exits quietly
        raise
    except KeyboardInterrupt:
        print("admbjax: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, LookupError, OSError) as err:
        print(f"admbjax: error: {_message(err) or type(err).__name__}", file=sys.stderr)
        return 2
    except Exception as err:         # anything else: still one line, never a traceback
        detail = _message(err)
        print(f"admbjax: error: {type(err).__name__}" + (f": {detail}" if detail else ""), file=sys.stderr)
        return 2


def _message(err: BaseException) -> str:
    """``err``'s text on one line (a KeyError's without the quotes its ``str`` adds)."""
    text = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else err
    return str(text).strip().replace("\n", "; ")


#: The exit status of a command whose output pipe was closed, as of a shell tool that SIGPIPE ends (128 + 13).
BROKEN_PIPE_STATUS = 141


def run() -> None:
    """The ``admbjax`` command: :func:`main`, then exit at once, its output flushed. Python's
    normal shutdown would then tear down JAX's backend and free every module: 0.27 s of a
    1.3 s sleepstudy fit, with nothing left to do (results are computed, files closed).
    A closed output pipe (``admbjax fit ... | head``) ends it quietly with status 141, as
    SIGPIPE ends a shell tool; the exit skips the flush that would report it again."""
    try:
        rc = main()
    except SystemExit as done:       # argparse: --help, usage errors (their message already written)
        rc = done.code if isinstance(done.code, int) else int(done.code is not None)
    except BrokenPipeError:
        rc = BROKEN_PIPE_STATUS
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        rc = BROKEN_PIPE_STATUS
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(rc)


if __name__ == "__main__":
    run()
