"""The package's layering as a contract: imports run one way, there are no cycles (function-local
imports included), and ``import ashlib`` stays light.

Data flows reference -> ops -> functional -> modules -> registry -> models/data -> train/analysis
-> experiments (DESIGN.md, "Layout"). The test parses every module's imports with ``ast`` (so
imports inside functions count, and only imports under ``if TYPE_CHECKING:`` are exempt, since
they never run) and checks each edge against the layer table below.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ashlib"

#: the layer of each module (by its longest matching prefix); an import may only go to a
#: layer at or below the importer's
LAYERS = {
    "ashlib.reference": 0,
    "ashlib.utils": 0,
    "ashlib.ops._common": 0,
    "ashlib.ops.native": 1,
    "ashlib.ops.triton_ash": 1,
    "ashlib.ops.elementwise": 2,
    "ashlib.ops.ash_family": 2,
    "ashlib.ops": 3,
    "ashlib.functional": 4,
    "ashlib.symbolic": 4,
    "ashlib.modules": 5,
    "ashlib.registry": 6,
    "ashlib.data": 7,
    "ashlib.models": 7,
    "ashlib.train": 8,
    "ashlib.analysis": 8,
    "ashlib.plotting": 9,
    "ashlib.plotstyle": 9,
    "ashlib.experiments": 9,
    "ashlib.__main__": 10,
    "ashlib": 11,  # the package's __init__ re-exports from below
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(mod: str) -> int:
    best = max((p for p in LAYERS if mod == p or mod.startswith(p + ".")), key=len)
    return LAYERS[best]


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path) -> set[str]:
    """Every ashlib module that ``path`` imports, at any depth, outside TYPE_CHECKING blocks."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "ashlib")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "ashlib":
                for a in node.names:  # `from . import x` may name a submodule
                    sub = f"{mod}.{a.name}"
                    found.add(sub if _exists(sub) else mod)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(name)
    return found


def _exists(mod: str) -> bool:
    p = ROOT.joinpath(*mod.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PKG.rglob("*.py")}


def test_imports_only_go_down_the_layers():
    bad = []
    for mod, deps in sorted(_graph().items()):
        for dep in sorted(deps):
            if _layer(dep) > _layer(mod):
                bad.append(f"{mod} (layer {_layer(mod)}) imports {dep} (layer {_layer(dep)})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    # package -> its submodules is the normal parent/child link, not a cycle
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                dfs(dep, stack + [dep])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            dfs(node, [node])
    assert not cycles, cycles


def test_checker_sees_function_local_imports(tmp_path):
    """The parser must find an import hidden in a function (the cycles of old were of that kind)."""
    mod = PKG / "ops" / "ash_family.py"
    assert "ashlib.reference" in _imports(mod)
    src = "def f():\n    from .. import functional\n"
    fake = PKG / "ops" / "_layering_probe.py"
    try:
        fake.write_text(src)
        assert _imports(fake) == {"ashlib.functional"}
        assert _layer("ashlib.functional") > _layer("ashlib.ops._layering_probe")
    finally:
        fake.unlink()


def test_import_ashlib_is_light():
    # (measured against what `import torch` itself loads: torch imports tqdm when it is installed)
    code = ("import sys, torch\n"
            "before = set(sys.modules)\n"
            "import ashlib, ashlib.functional, ashlib.ops\n"
            "heavy = [m for m in ('sympy', 'matplotlib', 'tqdm', 'sklearn', 'triton', 'onnx', 'mpmath')\n"
            "         if m in sys.modules and m not in before]\n"
            "print(','.join(heavy))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import ashlib imported: {out.stdout.strip()}"


def test_few_modules_flat_in_the_package():
    flat = sorted(p.name for p in PKG.glob("*.py"))
    assert len(flat) <= 10, flat
