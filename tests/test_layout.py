"""The pipeline is the layout: every import, function-level ones included, flows down it, no module is
in a cycle, and generated/ matches a fresh render."""

import ast
import types
from pathlib import Path

import pytest

import exprgen as ex

from exprgen.cache.kernelset import standard_kernels

PACKAGE = Path(__file__).resolve().parent.parent / "exprgen"

# The pipeline, in reading order. A module may import only modules before it (a package's __init__ that
# only names its stage is imported with any of its modules, and is left out).
ORDER = [
    # the ground floor: read by every stage
    "resources", "errors", "counters",
    # ir: what a graph is and what it means
    "ir.dtypes", "ir.views", "ir.numpy_helpers", "ir.formulas", "ir.opdefs", "ir.graph", "ir.interpret",
    "rewrite.pattern", "rewrite.rules",
    "schedule.fusion",
    "codegen.geometry", "codegen.render", "codegen.kinds",
    "backends.base", "backends.memory", "backends.cpu", "backends.cuda", "backends.cuda_host", "backends.numpy", "backends.registry",
    # the user's settings name a backend of the registry
    "settings",
    "cache.trust", "cache.store", "cache.kernelset", "cache.prebuild",
    "runtime.realize",
    "api.array", "api.methods", "api.elementwise", "api.eager", "api.functions", "api.reductions", "api.shapes",
    "api.creation", "api.materialising", "api.manipulation", "api.indexing", "api.linear_algebra",
    "api.array_api", "api.user_rules", "api.surface",
    "autodiff.reverse",
    "staging.jit",
    "tools.explain",
    "__init__",
    "tools.cli",
    "testing.checking", "testing.strategies", "testing.__init__",
]


def _modules() -> set[str]:
    found = {str(p.relative_to(PACKAGE).with_suffix("")).replace("/", ".") for p in PACKAGE.rglob("*.py")}
    return {m for m in found if not m.endswith(".__init__") or m == "testing.__init__"}


def _is_module(name: str) -> bool:
    return (PACKAGE / (name.replace(".", "/") + ".py")).exists() or (PACKAGE / name.replace(".", "/")).is_dir()


def _imports(module: str, source: str | None = None) -> set[str]:
    """Every exprgen module ``module`` imports, wherever the import sits (a function's body included)."""
    if source is None:
        source = (PACKAGE / (module.replace(".", "/") + ".py")).read_text()
    package = module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            targets = [".".join(base + [a.name]) if _is_module(".".join(base + [a.name])) else ".".join(base)
                       for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "exprgen":
            base = node.module.split(".")[1:]
            targets = [".".join(base + [a.name]) if _is_module(".".join(base + [a.name])) else ".".join(base)
                       for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [".".join(a.name.split(".")[1:]) for a in node.names if a.name.split(".")[0] == "exprgen"]
        for target in targets:
            found.add(target if target and target in _modules() else ("__init__" if not target else
                      target if target.endswith("__init__") else f"{target}.__init__" if target + ".__init__" in
                      _modules() else target))
    found.discard(module)
    return {m for m in found if not m.endswith(".__init__") or m in _modules()}


@pytest.mark.parametrize("module", [m for m in ORDER if m in _modules()])
def test_imports_flow_down_the_pipeline(module):
    allowed = set(ORDER[:ORDER.index(module)])
    upward = sorted(m for m in _imports(module) if m not in allowed)
    assert not upward, f"{module} imports {upward}, which come later in the pipeline (or are not in it)"


def test_every_module_has_a_place_in_the_pipeline():
    missing = _modules() - set(ORDER)
    assert not missing, f"modules missing from the layering order: {sorted(missing)}"


def test_no_module_is_in_an_import_cycle():
    graph = {m: _imports(m) & _modules() for m in _modules()}
    cycles, state = [], {}

    def visit(start):   # iterative depth-first search, reporting each back edge's cycle
        stack = [(start, iter(sorted(graph[start])))]
        path, state[start] = [start], "open"
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop(), path.pop()
                state[node] = "done"
            elif state.get(child) == "open":
                cycles.append(path[path.index(child):] + [child])
            elif child not in state:
                state[child] = "open"
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_function_level_and_absolute_imports():
    """A planted import inside a function, in each spelling, is counted."""
    source = ("def f():\n    from ..runtime import realize\n    import exprgen.api.array\n"
              "    from exprgen.codegen.render import render\n    from . import graph\n")
    assert _imports("ir.planted", source) == {"runtime.realize", "api.array", "codegen.render", "ir.graph"}


def test_generated_sources_match_a_fresh_render():
    generated = Path(__file__).resolve().parent.parent / "generated" / "cpu"
    fresh = dict(standard_kernels())
    on_disk = {p.stem: p.read_text() for p in generated.glob("*.cpp")}
    assert set(on_disk) == set(fresh), "generated/ lists other kernels than the standard set: run `make generate`"
    stale = sorted(name for name in fresh if fresh[name] != on_disk[name])
    assert not stale, f"generated/ is stale for {stale[:10]} ...: run `make generate` and commit the diff"


def test_the_public_namespace_is_its_all_and_advertises_no_internal_module():
    assert len(set(ex.__all__)) == len(ex.__all__) and all(hasattr(ex, name) for name in ex.__all__)
    public = {n for n, v in vars(ex).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert public <= set(ex.__all__), sorted(public - set(ex.__all__))
    assert not [n for n in ex.__all__ if isinstance(getattr(ex, n), types.ModuleType) and n != "rules"]
    assert dir(ex) == ex.__all__ and issubclass(ex.NoCompileError, RuntimeError)
