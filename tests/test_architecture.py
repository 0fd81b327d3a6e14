"""The import graph: arrows run one way between layers, and no module imports itself back.

Every ``import`` counts, wherever it stands: at module level, inside a function,
or under ``TYPE_CHECKING``. A function-level import that only dodges a cycle is
still a cycle, and a type-only import that points up is still an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

# folder -> the package it installs as (pyproject's package-dir)
FOLDERS = {"facestream": "facestream", "configs": "facestream.configs", "gallery": "facestream.gallery",
           "stream": "facestream.stream", "trainer": "facestream.trainer"}

# Layers from the bottom; a module may import its own layer group and any group listed before it.
LAYERS = [
    ["facestream.errors", "facestream.wire", "facestream.configs"],
    ["facestream.redis_url"],
    ["facestream.gallery"],
    ["facestream.stream.config_errors"],
    ["facestream.stream.config"],
    ["facestream.stream.engine"],
    ["facestream.stream.recognition", "facestream.trainer"],
    ["facestream.stream.live"],
    ["facestream.stream.serve"],  # the server: below the products, which plug into it (extensions)
    ["facestream.stream.attendance"],
    ["facestream.stream.demo", "facestream.stream.cluster"],
    ["facestream.stream.app"],  # the composition root: builds and stops the parts for every entry point
    ["facestream.stream.cli"],
    ["facestream", "facestream.__main__", "facestream.stream"],  # package roots: docs, version, `python -m`
]


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Our modules that ``name`` (at ``path``) imports anywhere in its source."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}: relative import"
            base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            if t.split(".")[0] == "facestream":
                found.add(t)
    found.discard(name)
    return found


def group(module: str) -> tuple[int, str]:
    """(layer index, group) of a module: the longest group name it falls under."""
    best = None
    for i, layer in enumerate(LAYERS):
        for g in layer:
            if (module == g or module.startswith(g + ".")) and (best is None or len(g) > len(best[1])):
                best = (i, g)
    assert best is not None, module
    return best


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(path, name, known) for name, path in mods.items()}


def test_every_import_points_down_or_within_its_group():
    upward = []
    for src, targets in graph().items():
        layer, g = group(src)
        for dst in targets:
            dst_layer, dst_g = group(dst)
            if dst_g != g and dst_layer >= layer:
                upward.append(f"{src} -> {dst}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(sorted(upward))


def test_only_the_command_line_imports_the_trainer():
    users = sorted(f"{src} -> {dst}" for src, targets in graph().items() for dst in targets
                   if dst.startswith("facestream.trainer") and not src.startswith(("facestream.trainer",
                                                                                   "facestream.stream.cli")))
    assert not users, "\n".join(users)


def test_the_gallery_imports_nothing_of_ours_but_the_root_error_and_redis_urls():
    bad = sorted(f"{src} -> {dst}" for src, targets in graph().items() if src.startswith("facestream.gallery")
                 for dst in targets if not dst.startswith(("facestream.gallery", "facestream.errors",
                                                           "facestream.redis_url")))
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
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
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_function_level_and_type_only_imports(tmp_path):
    """The graph would be worthless if imports inside functions or TYPE_CHECKING blocks escaped it."""
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from facestream.stream.live import x\n"
                   "def f():\n    import facestream.trainer.train\n")
    found = imports(src, "facestream.stream.engine.m", {"facestream.stream.live.x"})
    assert found == {"facestream.stream.live.x", "facestream.trainer.train"}
