"""The package's modules form no import cycle, counting imports inside functions: the
pipeline runs one way (data -> model -> objective -> optimise -> infer -> result) with the
front ends above it."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "admbjax"


def _imports(path: pathlib.Path) -> set:
    """The admbjax modules that ``path`` imports, anywhere in it."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("admbjax."):
            out.add(node.module.split(".")[1])
    return out


def test_no_import_cycles():
    modules = {p.stem: _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph = {m: {d for d in deps if d in modules and d != m} for m, deps in modules.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert "_formula" not in graph["_fit"] and "_batch" not in graph["_fit"]      # front ends above the engine
    assert "_fit" not in graph["_gaussian"] and "_formula_batch" not in graph["_batch"]
