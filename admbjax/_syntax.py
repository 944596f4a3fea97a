"""The formula language: what a formula may say, and how its names reach formulaic.

A formula is data, not code. Each term is tokenised here and may contain only

- names of data columns (R's syntactic names, any script, or any name in backticks:
  `` `reaction time` ``),
- numbers, ``TRUE``/``FALSE`` and ``pi``,
- the operators of formulas and arithmetic (``+ - * / : ^ **``, parentheses, ``,``),
- calls of the functions in :data:`FUNCTIONS` (``I``, ``log``, ``scale``, ``poly``, ...),
  with the keyword arguments listed there; ``np.NAME`` for an allowed numpy function.

Anything else (attribute access, subscripts, strings, other calls) is refused with an error
that names the term. Formulaic evaluates the terms with :data:`CONTEXT` as namespace,
after every column has been renamed to an alias (``_c0_``, ``_c1_``, ...): a column may then
be called ``Intercept``, ``class``, ``center`` or ``Élève`` without colliding with
formulaic's intercept, Python's keywords or a transform. :func:`user_name` maps formulaic's
column names back to R's spelling with the user's names (``scale(Days)``, ``SexMale``,
`` `my x` ``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from formulaic.transforms import C, center, identity, poly, scale

#: numpy functions a term may call, by name (also as ``np.NAME``); R's spelling -> numpy's.
MATH = {name: name for name in (
    "exp", "log", "log2", "log10", "log1p", "expm1", "sqrt", "abs", "sin", "cos", "tan", "arcsin",
    "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "floor", "ceil",
    "trunc", "sign", "square", "cbrt")}
MATH.update({"asin": "arcsin", "acos": "arccos", "atan": "arctan", "asinh": "arcsinh", "acosh": "arccosh",
             "atanh": "arctanh", "ceiling": "ceil"})

#: Functions a term may call -> the keyword arguments each accepts. ``factor`` and
#: ``as.factor`` are R's ``factor()``: formulaic's ``C`` with treatment contrasts.
FUNCTIONS = {"I": (), "scale": ("center", "scale"), "center": (), "poly": ("degree", "raw"), "C": (),
             "factor": (), "as.factor": (), **{name: () for name in MATH}}

#: Functions that transform each row on its own (no state learned from the data).
STATELESS = frozenset({"I", *MATH})

#: The namespace formulaic evaluates terms in: the allowed functions, under the names the
#: translated text uses (:func:`translate`).
CONTEXT = {"I": identity, "scale": scale, "center": center, "poly": poly, "C": C, "factor": C,
           **{name: getattr(np, target) for name, target in MATH.items()}}

CONSTANTS = {"TRUE": "True", "FALSE": "False", "T": "True", "F": "False", "pi": repr(float(np.pi))}

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<backtick>`[^`]*`)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>(?:[^\W\d]|\.(?![\d]))[\w.]*)
  | (?P<op>\*\*|\|\||[-+*/:^|~(),=])
""", re.VERBOSE)

#: R's syntactic names (printed without backticks).
SYNTACTIC = re.compile(r"(?:[^\W\d_]|\.(?!\d))[\w.]*")


def alias(k: int) -> str:
    """The identifier formulaic sees for the ``k``-th column a formula uses."""
    return f"_c{k}_"


def tokens(text: str, where: str):
    """``[(kind, text)]`` of ``text``; a character no formula may contain is an error
    naming ``where`` (the term or formula)."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"formula term {where!r} is refused: {text[pos]!r} is not allowed "
                             f"({_RULE})")
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
        pos = m.end()
    return out


_RULE = ("a term may use data columns, numbers, arithmetic and the functions "
         + ", ".join(sorted(set(FUNCTIONS) - set(MATH) - {"as.factor"})) + " and numpy math functions by name")


@dataclass(frozen=True)
class Names:
    """The columns a formula uses, in order of first use, each with its alias."""

    columns: tuple

    @property
    def to_alias(self) -> dict:
        return {c: alias(k) for k, c in enumerate(self.columns)}

    def user_name(self, name: str) -> str:
        """formulaic's column ``name`` with every alias replaced by the user's column name,
        in R's spelling (backticks around non-syntactic names, ``^`` for powers)."""
        def user(m):
            column = self.columns[int(m.group(1))]
            return column if SYNTACTIC.fullmatch(column) else f"`{column}`"

        name = re.sub(r"_c(\d+)_", user, name).replace(" ** ", "^").replace("**", "^")
        return re.sub(r"=(True|False)\b", lambda m: f" = {m.group(1).upper()}", name)


def column_name(token: tuple) -> str:
    kind, text = token
    return text[1:-1] if kind == "backtick" else text


def translate(text: str, columns, names: list, where: str | None = None) -> str:
    """``text`` (one term, or a grouping factor) with columns replaced by their aliases.

    ``columns``: the data's columns; ``names``: the columns used so far (appended to, in
    order of first use). Raises ``ValueError`` naming the term (``where``, default ``text``)
    for anything not allowed, and :class:`UnknownColumns` for names that are neither
    columns nor allowed functions.
    """
    where = text if where is None else where
    toks = tokens(text, where)
    out, calls, missing = [], [], []      # calls: the function of each open parenthesis (None: grouping)
    for i, (kind, tok) in enumerate(toks):
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "op":
            if tok == "(":
                call = _function(toks[i - 1][1], where) if i and toks[i - 1][0] == "name" else None
                calls.append(call)
                out.append(f"{call}(" if call else "(")
                continue
            if tok == ")" and calls:
                calls.pop()
            elif tok == "=" and not (calls and calls[-1] and toks[i - 1][0] == "name"):
                raise ValueError(f"formula term {where!r} is refused: '=' is only for a keyword argument ({_RULE})")
            elif tok == "^" and any(calls):
                tok = "**"                   # R's power, inside a function's arguments
            out.append(tok)
        elif kind == "number":
            out.append(tok)
        elif kind == "name" and nxt == "(":
            continue                         # a function: written with its parenthesis
        elif kind == "name" and nxt == "=" and calls and calls[-1]:
            allowed = FUNCTIONS[calls[-1]]
            if tok not in allowed:
                raise ValueError(f"formula term {where!r} is refused: {calls[-1]}() takes no argument {tok!r} "
                                 f"(allowed: {', '.join(allowed) or 'none'})")
            out.append(tok)
        else:
            column = column_name((kind, tok))
            if column in columns:
                if column not in names:
                    names.append(column)
                out.append(alias(names.index(column)))
            elif kind == "name" and tok in CONSTANTS:
                out.append(CONSTANTS[tok])
            else:
                missing.append(column)
    if missing:
        raise UnknownColumns(missing)
    return re.sub(r"\s+([),])", r"\1", re.sub(r"\(\s+", "(", " ".join(out)))


class UnknownColumns(ValueError):
    """Names in a formula that are neither data columns nor allowed functions."""

    def __init__(self, names):
        self.names = list(dict.fromkeys(names))
        super().__init__(f"unknown names {self.names}")


def _function(name: str, where: str) -> str:
    """The allowed function ``name`` calls (``np.log`` -> ``log``, ``as.factor`` -> ``factor``),
    or an error naming the term."""
    key = name.split(".", 1)[1] if name.startswith(("np.", "numpy.")) else name
    if name != key and key not in MATH.values():
        raise ValueError(f"formula term {where!r} is refused: {name}() is not an allowed numpy function ({_RULE})")
    if key not in FUNCTIONS:
        raise ValueError(f"formula term {where!r} is refused: {name}() is not an allowed function ({_RULE})")
    return {"as.factor": "factor"}.get(key, key)
