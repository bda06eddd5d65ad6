"""The package's layout: dependencies point one way, from the CLI and the training toolkit
down to the IR, and no import, at module level or inside a function, closes a cycle."""
import ast
from pathlib import Path

import graphc

# The stages, lowest first (DESIGN.md, "Layout"). A module may import a module of a lower
# stage, or of its own stage where the imports among that stage's modules form no cycle;
# stages on one line are independent of each other.
LAYERS = [
    ["graphc.version"],
    ["graphc.graph"],
    ["graphc.autodiff"],
    ["graphc.frontend"],
    ["graphc.lower"],
    ["graphc.backends"],
    ["graphc.codegen"],
    ["graphc.tiers"],                # tiered functions: numpy's answers while Numba compiles
    ["graphc.runtime"],
    ["graphc.compiler"],
    ["graphc.diagrams", "graphc.train"],
    ["graphc.distributed"],          # Dask: DataParallel, train, sweep (an optional extra)
    ["graphc.cli"],
    ["graphc", "graphc.__main__"],   # the public API: `import graphc as gc`
]


def modules_of(root: Path, package: str):
    """{module name: its file} for every .py file under `root` (the package `package`)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def imports_of(name: str, path: Path, known):
    """The package's modules that `name` imports anywhere in its text (inside functions too)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            bases = [alias.name for alias in node.names]
            found.update(b for b in bases if b in known)
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            anchor = name.split(".")
            anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
            base = ".".join(anchor + ([node.module] if node.module else []))
        else:
            base = node.module
        for alias in node.names:   # `from .graph import ops`: the submodule, where there is one
            sub = f"{base}.{alias.name}"
            found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def stage_of(module: str, layers):
    """(rank, stage) of the longest stage that names `module`: the module itself, or a
    package holding it (but the root package, the public API, holds only itself)."""
    best = None
    for rank, line in enumerate(layers):
        for stage in line:
            holds = module == stage or ("." in stage and module.startswith(stage + "."))
            if holds and (best is None or len(stage) > len(best[1])):
                best = (rank, stage)
    return best


def layout_problems(root: Path, package: str, layers):
    """Every module outside the stages, upward or sideways import, and import cycle."""
    modules = modules_of(root, package)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    problems = [f"{m} belongs to no stage" for m in graph if stage_of(m, layers) is None]
    for m, targets in graph.items():
        here = stage_of(m, layers)
        for t in sorted(targets):
            there = stage_of(t, layers)
            if here and there and there[1] != here[1] and there[0] >= here[0]:
                problems.append(f"{m} imports {t}: {'upward' if there[0] > here[0] else 'across'}")
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    return problems


def _cycles(graph):
    """One cycle through each strongly connected group of modules that has one."""
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_graphc_imports_point_down_and_close_no_cycle():
    root = Path(graphc.__file__).parent
    assert layout_problems(root, "graphc", LAYERS) == []


def test_the_check_finds_upward_imports_cycles_and_strays(tmp_path):
    """The check itself: a fake package with each kind of problem."""
    pkg = tmp_path / "pkg"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("from . import b\n")
    (pkg / "low" / "b.py").write_text("def f():\n    from .a import thing\n")   # a cycle, inside a function
    (pkg / "low" / "c.py").write_text("def f():\n    from ..high import run\n")   # upward, inside a function
    (pkg / "high.py").write_text("from .low import a\nimport pkg.low.c\n")
    (pkg / "side.py").write_text("from .other import x\n")
    (pkg / "other.py").write_text("")
    (pkg / "stray.py").write_text("")
    layers = [["pkg.low"], ["pkg.high"], ["pkg.side", "pkg.other"], ["pkg"]]
    problems = layout_problems(pkg, "pkg", layers)
    assert problems == ["pkg.stray belongs to no stage",
                        "pkg.low.c imports pkg.high: upward",
                        "pkg.side imports pkg.other: across",
                        "import cycle: pkg.low.a -> pkg.low.b -> pkg.low.a",
                        "import cycle: pkg.high -> pkg.low.c -> pkg.high"]


def test_a_new_target_is_a_folder_and_a_line():
    """Lowering, code generation, CompiledGraph and the training toolkit never ask for a
    backend by name: only graphc/backends/ names them."""
    root = Path(graphc.__file__).parent
    for path in sorted(root.rglob("*.py")):
        if root / "backends" in path.parents:
            continue
        text = path.read_text()
        for name in ("numba", "cuda", "numpy"):
            for quoted in (f'== "{name}"', f"== '{name}'", f'!= "{name}"', f"!= '{name}'"):
                assert quoted not in text, f"{path.relative_to(root)} tests the target's name: {quoted}"


def test_modules_and_functions_stay_small():
    """A module of the package reads in one sitting: at most 400 lines, and no function
    over 60."""
    root = Path(graphc.__file__).parent
    too_long = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 400:
            too_long.append(f"{path.relative_to(root)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                too_long.append(f"{path.relative_to(root)}: {node.name} has {node.end_lineno - node.lineno + 1} lines")
    assert too_long == []
