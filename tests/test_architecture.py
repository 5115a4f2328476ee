"""The package's floors (docs/architecture.md), read from the source: no import cycle (imports
inside functions included), kernels without torchtitan, lower floors never import higher ones."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "prefix_titan"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_names(name: str, path: Path):
    """(module imported, at line) for every import statement in the file, nested ones too."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            yield base, node.lineno
            for alias in node.names:  # `from pkg import submodule`
                yield f"{base}.{alias.name}", node.lineno


def package_imports(name: str, path: Path) -> set[str]:
    """The package's own modules that `name` imports (a package's __init__ included)."""
    deps = set()
    for target, _ in imported_names(name, path):
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            deps.add(target)
    return deps


GRAPH = {name: package_imports(name, path) for name, path in MODULES.items()}


def test_the_walk_sees_imports_inside_functions():
    assert "prefix_titan.export" in GRAPH["prefix_titan.eval"]  # imported inside evaluate_run
    assert "prefix_titan.objectives.kernel" in GRAPH["prefix_titan.objectives.fused"]


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node, path):
        state[node] = 1
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [node])


def defines_autograd_function(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            if any(ast.unparse(b).endswith("autograd.Function") for b in node.bases):
                return True
    return False


def torchtitan_imports(name: str, path: Path) -> list[int]:
    return [
        line for target, line in imported_names(name, path) if target.split(".")[0] == "torchtitan"
    ]


def test_kernel_files_import_nothing_from_torchtitan():
    kernels = {n: p for n, p in MODULES.items() if defines_autograd_function(p)}
    assert {"prefix_titan.objectives.kernel", "prefix_titan.objectives.fused"} <= set(kernels)
    for name, path in kernels.items():
        assert not torchtitan_imports(name, path), f"{name} imports torchtitan"


LEAVES = tuple(
    f"prefix_titan.{m}"
    for m in ("corpus", "shards", "run_folder", "tasks", "checkpoints", "hub", "stats")
)
ADAPTERS = tuple(
    f"prefix_titan.{m}"
    for m in ("config", "loss", "validate", "metrics", "tokenizer", "data", "cpu", "logs")
)
FLOORS = {  # floor: the package modules (prefixes) it may import
    **{leaf: (leaf,) for leaf in LEAVES},
    "prefix_titan.checkpoints": ("prefix_titan.checkpoints", "prefix_titan.run_folder"),
    "prefix_titan.objectives": ("prefix_titan.objectives",),
    "prefix_titan.model": ("prefix_titan.model", "prefix_titan.objectives", *LEAVES),
    **{a: ("prefix_titan.model", "prefix_titan.objectives", *LEAVES, *ADAPTERS) for a in ADAPTERS},
}


@pytest.mark.parametrize("floor", sorted(FLOORS))
def test_lower_floors_never_import_higher_ones(floor):
    for name, deps in GRAPH.items():
        if name == floor or name.startswith(floor + "."):
            bad = [d for d in deps if not d.startswith(FLOORS[floor])]
            assert not bad, f"{name} (floor {floor}) imports {bad}"
    objectives = [n for n in MODULES if n.startswith("prefix_titan.objectives")]
    for name in objectives:
        assert not torchtitan_imports(name, MODULES[name]), f"{name} imports torchtitan"


def test_nothing_in_the_package_imports_the_train_spec():
    importers = [n for n, deps in GRAPH.items() if "prefix_titan.train_spec" in deps]
    assert importers == []


def test_the_objectives_load_without_torchtitan():
    code = (
        "import sys; import prefix_titan.objectives, prefix_titan.objectives.reference; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchtitan'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
