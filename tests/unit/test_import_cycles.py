"""No import cycles in kubebastion/, lab/, tasks.py, examples/ or tests/ (issue 14).

A cycle makes the import order matter and hides which layer depends on which, so the
graph is built statically from the source: every `import` and `from ... import`, also
those inside functions and under TYPE_CHECKING, since a lazy import is exactly how a
cycle gets papered over instead of removed."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kubebastion", "lab", "examples", "tests")
TOP_LEVEL = ("tasks.py",)
# Not modules of the `lab` package: scripts that run on the lab hosts (copied there by the
# stand-in kubespray role), and the labs' state (hosts' homes, with venvs, git-ignored).
SKIPPED = ("lab/kubespray", "lab/apiserver", "lab/state")


def module_files(root: Path) -> dict[str, Path]:
    """Module name -> file, for every module of the packages checked."""
    found: dict[str, Path] = {}
    paths = [root / name for name in TOP_LEVEL if (root / name).exists()]
    for package in PACKAGES:
        for folder, subfolders, names in os.walk(root / package):
            here = Path(folder)
            subfolders[:] = sorted(name for name in subfolders if not (here / name).relative_to(
                root).as_posix().startswith(SKIPPED))
            paths.extend(here / name for name in sorted(names) if name.endswith(".py"))
    for path in paths:
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, str]]:
    """(base, name) for every name an import statement in `tree` loads: `import a.b` is
    ("a.b", ""), `from a import b` is ("a", "b") (b a submodule or a name in a)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ""
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            for alias in node.names:
                yield base, alias.name


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the checked packages it imports explicitly. The parent
    packages Python initialises on the way are not edges, or every package that
    re-exports its submodules would be a cycle with them."""
    files = module_files(root)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for base, name in _imports(tree, module, path.name == "__init__.py"):
            if name and f"{base}.{name}" in files:
                targets.add(f"{base}.{name}")
            elif base in files:
                targets.add(base)
        targets.discard(module)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle per strongly connected component with more than one module
    (Tarjan), each as the path a -> b -> ... -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth first)."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle in component {sorted(component)}")


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_no_import_cycle() -> None:
    found = cycles(import_graph(ROOT))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_graph_covers_the_code_and_skips_host_scripts() -> None:
    files = module_files(ROOT)
    assert {"kubebastion.ssh.connection", "lab.lifecycle", "tasks", "tests.unit"} <= set(files)
    assert not any(name.startswith(("lab.kubespray", "lab.apiserver")) for name in files)


@pytest.mark.parametrize(("files", "expected"), [
    ({"kubebastion/__init__.py": "",
      "kubebastion/a.py": "import kubebastion.b\n",
      "kubebastion/b.py": "from kubebastion import a\n"},
     [["kubebastion.a", "kubebastion.b", "kubebastion.a"]]),
    ({"kubebastion/__init__.py": "",
      "kubebastion/a.py": "def f() -> None:\n    from kubebastion.b import g\n",
      "kubebastion/b.py": "from .c import h\ng = 1\n",
      "kubebastion/c.py": "from . import a\nh = 1\n"},
     [["kubebastion.a", "kubebastion.b", "kubebastion.c", "kubebastion.a"]]),
    ({"kubebastion/__init__.py": "from kubebastion.p.x import X\n",
      "kubebastion/p/__init__.py": "from .x import X\n",
      "kubebastion/p/x.py": "from kubebastion.p.y import Y\nX = Y\n",
      "kubebastion/p/y.py": "Y = 1\n",
      "lab/__init__.py": "",
      "lab/hosts.py": "from lab.lifecycle import up\n",
      "lab/lifecycle.py": "up = 1\n"},
     []),
    ({"kubebastion/__init__.py": "",
      "lab/__init__.py": "",
      "lab/hosts.py": "from lab import lifecycle\n",
      "lab/lifecycle.py": "import typing\nif typing.TYPE_CHECKING:\n    from lab.hosts import H\n"},
     [["lab.hosts", "lab.lifecycle", "lab.hosts"]]),
    ({"kubebastion/__init__.py": "from kubebastion.a import A\n",
      "kubebastion/a.py": "A = 1\n",
      "kubebastion/b.py": "from kubebastion import A\n",
      "lab/__init__.py": ""},
     []),
    ({"kubebastion/__init__.py": "from kubebastion.b import B\n",
      "kubebastion/a.py": "A = 1\n",
      "kubebastion/b.py": "from kubebastion import a\nB = 1\n",
      "lab/__init__.py": ""},
     []),
    ({"kubebastion/__init__.py": "from kubebastion.b import B\n",
      "kubebastion/b.py": "from kubebastion import VERSION\nB = 1\n",
      "lab/__init__.py": ""},
     [["kubebastion", "kubebastion.b", "kubebastion"]]),
], ids=["absolute", "lazy-and-relative", "acyclic-reexports", "type-checking-counts",
        "name-from-package", "submodule-from-package", "name-from-reexporting-package"])
def test_cycles_found_in_small_trees(
    tmp_path: Path, files: dict[str, str], expected: list[list[str]]
) -> None:
    write(tmp_path, {"kubebastion/__init__.py": "", "lab/__init__.py": "", **files})
    assert cycles(import_graph(tmp_path)) == expected
