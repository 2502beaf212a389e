"""The pipeline is the layout: imports flow down it, and generated/ matches a fresh render."""

import ast
from pathlib import Path

import pytest

from exprgen.kernelset import standard_kernels

PACKAGE = Path(__file__).resolve().parent.parent / "exprgen"

# Each module may import only modules before it (pipeline order), at module level.
ORDER = ["resources", "dtypes", "counters", "settings", "views", "opdefs", "graph", "reference", "pattern", "rules",
         "schedule", "render", "backends.cpu", "backends.cuda", "cache", "memory", "kernelset", "prebuild", "realize", "array", "functions", "creation", "autodiff", "materialising", "manipulation", "indexing", "linear_algebra", "report", "array_api",
         "__init__", "cli", "checking", "testing"]


def _module_imports(path: Path) -> set[str]:
    """exprgen modules imported at module level (function-level imports are lazy, by design)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = "backends." if path.parent.name == "backends" else ""
            if node.level == 2:
                base = ""
            module = node.module or ""
            if module:
                found.add(base + module)
            else:
                found.update(base + alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("module", [m for m in ORDER if (PACKAGE / (m.replace(".", "/") + ".py")).exists()])
def test_imports_flow_down_the_pipeline(module):
    path = PACKAGE / (module.replace(".", "/") + ".py")
    allowed = set(ORDER[:ORDER.index(module)]) | {"backends"}
    upward = {m for m in _module_imports(path) if m in ORDER and m not in allowed}
    assert not upward, f"{module} imports {sorted(upward)}, which come later in the pipeline"


def test_every_module_has_a_place_in_the_pipeline():
    modules = {str(p.relative_to(PACKAGE).with_suffix("")).replace("/", ".") for p in PACKAGE.rglob("*.py")}
    modules.discard("backends.__init__")
    assert modules <= set(ORDER), f"modules missing from the layering order: {sorted(modules - set(ORDER))}"


def test_generated_sources_match_a_fresh_render():
    generated = Path(__file__).resolve().parent.parent / "generated" / "cpu"
    fresh = dict(standard_kernels())
    on_disk = {p.stem: p.read_text() for p in generated.glob("*.cpp")}
    assert set(on_disk) == set(fresh), "generated/ lists other kernels than the standard set: run `make generate`"
    stale = sorted(name for name in fresh if fresh[name] != on_disk[name])
    assert not stale, f"generated/ is stale for {stale[:10]} ...: run `make generate` and commit the diff"
