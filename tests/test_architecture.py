"""The package's shape, checked: no import cycles (imports inside functions included), the size limits,
and imports inside functions only for optional heavy packages.

The layers themselves are an import-linter contract in pyproject.toml (``lint-imports``, run by
``make test``); docs/architecture.md explains them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "noiselevels"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# imported inside functions so that `import noiselevels` and `noiselevels --help` do not pay for them
OPTIONAL = {
    "accelerate", "diffusers", "huggingface_hub", "matplotlib", "mlxtend", "peft", "PIL", "ray",
    "safetensors", "scipy", "sklearn", "torchsde", "tqdm", "transformers", "yaml",
}  # fmt: skip
# command modules import the library inside run() so that `noiselevels --help` does not import torch
COMMAND_LAZY = {"noiselevels", "torch", "numpy"}


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    g = grimp.build_graph("noiselevels")
    graph = {m: set(g.find_modules_directly_imported_by(m)) for m in g.modules}
    cycles = _strongly_connected(graph)
    assert not cycles, f"import cycles (imports inside functions count): {cycles}"


def test_tarjan_finds_a_cycle():
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _name(p))
def test_module_size(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_MODULE_LINES, f"{_name(path)} has {n} lines (limit {MAX_MODULE_LINES}): split it"


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _name(p))
def test_function_size(path):
    tree = ast.parse(path.read_text())
    long = [
        f"{f.name} ({f.end_lineno - f.lineno + 1} lines, line {f.lineno})"
        for f in _functions(tree)
        if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{_name(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def _imported_roots(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return ["noiselevels" if node.level else (node.module or "").split(".")[0]]
    return []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _name(p))
def test_imports_inside_functions_only_for_optional_packages(path):
    allowed = OPTIONAL | (COMMAND_LAZY if _name(path).startswith("noiselevels.commands") else set())
    tree = ast.parse(path.read_text())
    bad = sorted(
        {
            f"{root} (in {f.name}, line {node.lineno})"
            for f in _functions(tree)
            for node in ast.walk(f)
            for root in _imported_roots(node)
            if root not in allowed
        }
    )
    assert not bad, f"{_name(path)} imports inside functions what belongs at the top: {bad}"
