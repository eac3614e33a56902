"""The import graph of the packages, read from the source (AST), not from what happens to
be imported at run time: every `import` counts, also one inside a function or under
TYPE_CHECKING, because each is an arrow a reader has to follow.

The layering it checks: `fim_model` is a library (the network, its decoding, its training)
that knows nothing of the server; the server's folders are layers (`LAYERS`) and none
imports a layer above its own; and neither the packages nor their modules form a loop.

    python tests/test_import_graph.py   prints the package and module arrows and loops
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The installed packages (pyproject.toml's [tool.setuptools] packages), each in the folder
# of its import name so that an arrow between folders is an arrow between packages.
PACKAGES = ("fim_server", "fim_model")


def module_files() -> dict[str, Path]:
    """Every module of the packages by its dotted name (a package by its __init__)."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        folder = ROOT / package
        if not (folder / "__init__.py").is_file():
            raise AssertionError(f"the package {package} has no folder {folder.name}/ of its name")
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom, known: set[str]):
    """The dotted names one import statement reaches, relative imports resolved."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        base = node.module or ""
    else:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    # `from pkg import name` imports the submodule pkg.name where there is one.
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def module_arrows() -> dict[str, set[str]]:
    """module -> the modules of the packages it imports (each resolved to the longest
    known module name: `fim_server.context.languages.parse` is `fim_server.context.languages`)."""
    files = module_files()
    known = set(files)
    arrows: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _imported(module, path, node, known):
                parts = name.split(".")
                while parts and ".".join(parts) not in known:
                    parts.pop()
                if parts and ".".join(parts) != module:
                    arrows[module].add(".".join(parts))
    return arrows


def package_arrows(arrows: dict[str, set[str]]) -> dict[str, set[str]]:
    """Top-level package -> the other top-level packages its modules import."""
    out: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for module, targets in arrows.items():
        top = module.split(".")[0]
        out[top] |= {t.split(".")[0] for t in targets} - {top}
    return out


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


# The server's layers, bottom first: a module may import its own layer and those below.
# Each entry names modules by prefix (a folder, or one module of it). The defaults sit
# under everything; the user settings sit above the backends, whose kinds and recipes
# they check; context and backends know nothing of each other, nor does cleanup of the
# backends; the modules at the top level (the pipeline and what it holds) tie them
# together; the LSP and the command line are the entry points.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("fim_server.config.defaults",),
    ("fim_server.context", "fim_server.backends"),
    ("fim_server.cleanup", "fim_server.config"),
    (
        "fim_server.cache",
        "fim_server.completion",
        "fim_server.debounce",
        "fim_server.stats",
        "fim_server.pipeline",
        "fim_server.model_host",
        "fim_server.engine",
        "fim_server.eval",
    ),
    ("fim_server.lsp", "fim_server.cli", "fim_server.__main__", "fim_server.train"),
)


def layer_of(module: str) -> int | None:
    """The layer of a server module: its longest matching prefix in LAYERS (None: the
    package's own __init__, which imports nothing, or a module of another package)."""
    best: tuple[int, int] | None = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), rank)
    return best[1] if best is not None else None


def upward_arrows(arrows: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} -> {target}"
        for module, targets in arrows.items()
        for target in targets
        if (low := layer_of(module)) is not None
        and (high := layer_of(target)) is not None
        and high > low
    )


def test_every_server_module_has_a_layer() -> None:
    unplaced = [m for m in module_arrows() if m.startswith("fim_server.") and layer_of(m) is None]
    assert unplaced == []


def test_nothing_imports_a_layer_above_its_own() -> None:
    assert upward_arrows(module_arrows()) == []


def test_the_model_imports_nothing_of_the_server() -> None:
    arrows = module_arrows()
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in arrows.items()
        if module.split(".")[0] == "fim_model"
        for target in targets
        if target.split(".")[0] == "fim_server"
    )
    assert upward == []


def test_no_loop_between_top_level_packages() -> None:
    assert loops(package_arrows(module_arrows())) == []


def test_no_loop_between_modules() -> None:
    # A loop hides which module is the lower layer: a completion's text should pass
    # through each module once.
    assert loops(module_arrows()) == []


def test_the_graph_reader_finds_arrows_and_loops() -> None:
    """The reader itself: it sees the embedded backend's arrow into the model (so an empty
    answer above is not a reader that sees nothing) and finds a loop where there is one."""
    arrows = module_arrows()
    assert "fim_model" in arrows["fim_server.backends.embedded"]
    assert "fim_server.context.languages" in arrows["fim_server.context.context"]
    assert loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    # An arrow from the context to the pipeline would be one up.
    assert upward_arrows({"fim_server.context.window": {"fim_server.pipeline"}}) == [
        "fim_server.context.window -> fim_server.pipeline"
    ]
    assert layer_of("fim_server.config.defaults") == 0 < layer_of("fim_server.config.settings")


if __name__ == "__main__":
    arrows = module_arrows()
    count = sum(len(t) for t in arrows.values())
    print(f"{len(arrows)} modules, {count} module arrows")
    for package, targets in package_arrows(arrows).items():
        print(f"package {package} -> {sorted(targets)}")
    for module, targets in sorted(arrows.items()):
        for target in sorted(targets):
            if module.split(".")[0] != target.split(".")[0]:
                print(f"  {module} -> {target}")
    for loop in loops(arrows):
        print(f"module loop ({len(loop)}): {' '.join(loop)}")
    for loop in loops(package_arrows(arrows)):
        print(f"package loop: {' '.join(loop)}")
    sys.exit(0)
