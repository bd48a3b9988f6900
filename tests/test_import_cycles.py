"""No import circles in fastconv/: the module-level imports of the package form a graph without cycles.

Imports inside functions run at call time and are allowed (a lazy import is sometimes the honest way to
reach an optional dependency); ``if TYPE_CHECKING:`` imports never run. Everything else a module
executes on import counts, ``from . import x`` included.
"""
import ast
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_names(package_dir):
    """{dotted module name: file} for every module under a package folder, built extensions (_emu) too:
    ``from . import _emu`` imports the extension, not the package."""
    base = package_dir.parent
    names = {}
    for file in sorted(package_dir.rglob("*")):
        suffix = next((s for s in (".py", *EXTENSION_SUFFIXES) if file.name.endswith(s)), None)
        if suffix is None or not file.is_file():
            continue
        parts = list(file.relative_to(base).parts)
        parts[-1] = parts[-1][:-len(suffix)]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = file
    return names


def _top_level_imports(tree):
    """Import statements run on import: the module body, its if/try/with blocks and class bodies."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.ClassDef)) or type(node).__name__ == "TryStar":
            for field in ("body", "orelse", "finalbody", "handlers"):
                todo.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)


def import_graph(package_dir):
    """{module: set of package modules it imports at module level}."""
    modules = module_names(package_dir)
    graph = {}
    for name, file in modules.items():
        if file.suffix != ".py":
            graph[name] = set()
            continue
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in _top_level_imports(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
                continue
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(anchor + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                # "from pkg import sub" imports the submodule; "from mod import name" imports mod
                target = f"{source}.{alias.name}"
                edges.add(target if target in modules else source)
        # importing pkg.sub.mod runs pkg.sub's __init__ first (the packages above `name` already ran)
        edges |= {p for e in edges for p in _parents(e) if not name.startswith(p + ".")}
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def _parents(module):
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def find_cycle(graph):
    """One cycle as [a, b, ..., a], or None (depth-first search, iterative)."""
    state = {}
    for start in sorted(graph):
        if start in state:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = "open"
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = "done"
                stack.pop()
                path.pop()
            elif state.get(child) == "open":
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = "open"
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def all_cycles(graph):
    """Every strongly connected group of more than one module (Tarjan's algorithm, recursive: the package
    is a few hundred modules deep at most), each shown as one cycle through it."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(find_cycle({k: graph[k] & group for k in group}))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_fastconv_has_no_import_cycles():
    cycles = all_cycles(import_graph(ROOT / "fastconv"))
    assert not cycles, "import cycles in fastconv/:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_checker_finds_a_planted_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "a.py").write_text("from .sub.b import f\n\ndef g():\n    from . import c  # lazy: not an edge\n")
    (pkg / "sub" / "b.py").write_text("import pkg.c\nfrom typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n    from .. import a\n")
    (pkg / "c.py").write_text("try:\n    from .a import g\nexcept ImportError:\n    pass\n")
    graph = import_graph(pkg)
    assert graph == {"pkg": set(), "pkg.sub": {"pkg.sub.b"}, "pkg.a": {"pkg.sub", "pkg.sub.b"}, "pkg.sub.b": {"pkg.c"},
                     "pkg.c": {"pkg.a"}}
    assert all_cycles(graph) == [["pkg.a", "pkg.sub", "pkg.sub.b", "pkg.c", "pkg.a"]]
    (pkg / "c.py").write_text("")
    assert all_cycles(import_graph(pkg)) == []
    # a circle closed only through a package's __init__: pkg.c imports pkg.sub.b, whose package imports pkg.a
    (pkg / "sub" / "__init__.py").write_text("from .. import a\n")
    (pkg / "a.py").write_text("")
    (pkg / "c.py").write_text("from .sub.b import f\n")
    (pkg / "sub" / "b.py").write_text("")
    assert all_cycles(import_graph(pkg)) == []
    (pkg / "a.py").write_text("from .c import g\n")
    assert all_cycles(import_graph(pkg)) == [["pkg.a", "pkg.c", "pkg.sub", "pkg.a"]]
