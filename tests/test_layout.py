"""The house rules, checked on the package's own source (AST only, nothing imported).

No module over 450 lines, no import circle among the package's modules (imports inside functions included), imports
inside functions only at the named edges, no function with more than 8 parameters, every CLI `main` at most 60 lines.
Thin re-export modules (the old paths melody_plugin.pipelines, .corpus and .generator) are left out of the size and
import checks, as the layout says.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "melody_plugin"
MAX_LINES = 450
MAX_PARAMETERS = 8
MAX_CLI_MAIN_LINES = 60
# What may be imported inside a function, and why: seconds of start-up for commands that do not need it
# (TensorFlow, note-seq's package), optional extras (music21, Magenta, the notation and page libraries), heavy
# renderers (matplotlib).
EDGE_PACKAGES = {"tensorflow", "keras", "note_seq", "music21", "magenta", "matplotlib", "verovio", "cairosvg",
                 "starlette", "uvicorn"}
# notation/ (the score, ABC and MusicXML writers) loads only when --format or --render=score asks for it
EDGE_MODULES = {"melody_plugin.notation"}
# each edge behind one small function: these alone may import an edge package inside their body
EDGE_FUNCTIONS = {"import_tensorflow", "import_keras", "import_note_seq", "_music21", "music21_module", "_pyplot",
                  "_verovio", "svg_to_png", "_notation", "__getattr__",
                  "_load"}  # io/protos.py: note-seq's protobuf modules, by path
# imports point one way: a module may import its own layer or a lower one, never a higher one
LAYERS = {"errors": 0, "runtime": 0, "io": 1, "music": 2, "tokens": 3, "model": 4, "train": 5, "generate": 5,
          "evaluate": 5, "notation": 5, "interop": 6, "studio": 6, "cli": 7}
# The library behind a command is imported inside its `main`, after the flags are parsed: `--help` imports none.
CLI_FOLDER = "cli"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def is_thin_reexport(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text()))
    return bool(doc) and doc.startswith("Thin re-export")


def imported_modules(node, current: str, is_package: bool) -> list[str]:
    """The modules an import statement (or `importlib.import_module("...")` call) names, resolved."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = current.split(".")
            base = base[:len(base) - node.level + (1 if is_package else 0)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module
        return [module] + [f"{module}.{a.name}" for a in node.names]
    if isinstance(node, ast.Call) and node.args:  # importlib.import_module("name") or (f"prefix.{name}")
        arg = node.args[0]
        if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
            arg = arg.values[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return [arg.value.rstrip(".")]
    return []


def import_nodes(tree):
    """(node, inside_function, function name) for every import in a module."""
    out = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) == "TYPE_CHECKING":
                continue  # annotations only: never runs
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)) or (
                    isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                    and child.func.attr == "import_module"):
                out.append((child, function))
            visit(child, function)

    visit(tree, None)
    return out


MODULES = modules()
CHECKED = {name: path for name, path in MODULES.items() if not is_thin_reexport(path)}


@pytest.mark.parametrize("name", sorted(CHECKED))
def test_no_module_is_over_450_lines_and_each_says_its_job(name):
    path = CHECKED[name]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path}: {lines} lines"
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and doc.strip(), f"{path}: no docstring saying its job"


def test_no_import_circle_among_the_packages_modules():
    graph = {}
    for name, path in CHECKED.items():
        tree = ast.parse(path.read_text())
        targets = set()
        for node, _ in import_nodes(tree):
            for module in imported_modules(node, name, path.name == "__init__.py"):
                while module and module not in MODULES:  # `from pkg import name` names an attribute, not a module
                    module = module.rpartition(".")[0]
                if module in CHECKED and module != name:
                    targets.add(module)
        graph[name] = targets
    # a package's __init__ importing its own modules is how Python loads them, not a circle
    for name in graph:
        graph[name] = {t for t in graph[name] if not (MODULES[t].name == "__init__.py" and name.startswith(t + "."))}
    done, stack = set(), []

    def visit(node):
        if node in stack:
            raise AssertionError("import circle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in done:
            return
        stack.append(node)
        for target in sorted(graph[node]):
            visit(target)
        stack.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)


def test_imports_inside_functions_are_only_at_the_named_edges():
    offenders = []
    for name, path in CHECKED.items():
        tree = ast.parse(path.read_text())
        for node, function in import_nodes(tree):
            if function is None:
                continue
            if path.name == "__init__.py" and function == "__getattr__":
                continue  # the package's lazy public exports
            if name.split(".")[1:2] == [CLI_FOLDER] and function in ("main", "_save_bundle", "train_options"):
                continue
            targets = imported_modules(node, name, path.name == "__init__.py")
            edge = targets and (targets[0].split(".")[0] in EDGE_PACKAGES
                                or any(t.startswith(m) for t in targets for m in EDGE_MODULES))
            if edge and function in EDGE_FUNCTIONS:
                continue
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} in {function}: {ast.unparse(node)}")
    assert not offenders, "imports inside functions outside the edges:\n" + "\n".join(offenders)


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1] if len(parts) > 1 else "", None) if parts[0] == "melody_plugin" else None


def test_imports_point_one_way_down_the_flow():
    offenders = []
    for name, path in CHECKED.items():
        own = layer_of(name)
        if own is None:
            continue
        for node, _ in import_nodes(ast.parse(path.read_text())):
            for target in imported_modules(node, name, path.name == "__init__.py")[:1]:
                other = layer_of(target)
                if other is not None and other > own:
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {name} imports {target}")
    assert not offenders, "imports pointing up the flow:\n" + "\n".join(offenders)


def test_no_function_has_more_than_8_parameters_and_cli_mains_are_short():
    offenders = []
    for name, path in CHECKED.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = node.args
            params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
            params += [a.arg for a in (args.vararg, args.kwarg) if a]
            if len(params) > MAX_PARAMETERS:
                offenders.append(f"{path.name}:{node.lineno} {node.name}: {len(params)} parameters")
            if name.startswith("melody_plugin.cli.") and node.name == "main":
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLI_MAIN_LINES:
                    offenders.append(f"{path.name}: main is {length} lines")
    assert not offenders, "\n".join(offenders)
