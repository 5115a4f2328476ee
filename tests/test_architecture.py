"""The package's floors, read from the source and from docs/architecture.md: each folder of the
package is a floor, the top-level modules (the commands) the highest; the doc's floor table lists
every folder in order, and a module imports only from its own floor or lower ones (imports inside
functions included). Also: no import cycle, kernels and the objectives floor without torchtitan,
no sys.path edits."""

import ast
import re
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
    assert "prefix_titan.evaluation.export" in GRAPH["prefix_titan.evaluation.harness"]
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


COMMANDS = "(top level)"


def documented_floors() -> list[str]:
    """The floor table of docs/architecture.md, lowest first: `N  folder/` lines (or
    `N  (top level)` for the commands) in its first fenced block."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = doc.split("```")[1]
    rows = re.findall(r"^\s*(\d+)\s+(\(top level\)|[a-z_]+/)", block, re.M)
    assert rows, "docs/architecture.md's first fenced block lists no floors"
    floors = [name.rstrip("/") for _, name in sorted(rows, key=lambda r: int(r[0]))]
    assert [int(n) for n, _ in sorted(rows, key=lambda r: int(r[0]))] == list(range(len(rows)))
    return floors


FOLDERS = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
FLOORS = documented_floors()


def floor_of(module: str) -> str:
    """A module's floor: the package folder it is in, or the commands for a top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in FOLDERS) else COMMANDS


def test_the_documented_floors_are_the_folders():
    assert sorted(f for f in FLOORS if f != COMMANDS) == FOLDERS
    assert FLOORS[-1] == COMMANDS


@pytest.mark.parametrize("floor", FLOORS)
def test_lower_floors_never_import_higher_ones(floor):
    rank = {f: i for i, f in enumerate(FLOORS)}
    modules = [name for name in GRAPH if floor_of(name) == floor]
    assert modules, f"no module on floor {floor}"
    for name in modules:
        higher = [d for d in GRAPH[name] if rank[floor_of(d)] > rank[floor]]
        assert not higher, f"{name} (floor {floor}) imports higher floors: {higher}"


def test_the_objectives_floor_stands_alone():
    """objectives/ imports nothing else of the package, and no torchtitan."""
    for name, path in MODULES.items():
        if floor_of(name) == "objectives":
            others = [d for d in GRAPH[name] if floor_of(d) != "objectives"]
            assert not others, f"{name} imports {others}"
            assert not torchtitan_imports(name, path), f"{name} imports torchtitan"


@pytest.mark.parametrize("floor", ["runs", "objectives", "sweep"])
def test_floors_without_torchtitan(floor):
    for name, path in MODULES.items():
        if floor_of(name) == floor:
            assert not torchtitan_imports(name, path), f"{name} imports torchtitan"


def test_nothing_in_the_package_imports_the_train_spec():
    importers = [n for n, deps in GRAPH.items() if "prefix_titan.train_spec" in deps]
    assert importers == []


def test_no_sys_path_edits():
    """The package is installed (pip install -e .): nothing adds to sys.path to find it."""
    edits = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in (*PACKAGE.rglob("*.py"), *ROOT.glob("scripts/*.py"), *ROOT.glob("tests/*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr in ("insert", "append", "extend")
        and ast.unparse(node.value) == "sys.path"
    ]
    assert edits == []


@pytest.mark.slow
def test_the_objectives_load_without_torchtitan():
    code = (
        "import sys; import prefix_titan.objectives, prefix_titan.objectives.reference; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchtitan'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
