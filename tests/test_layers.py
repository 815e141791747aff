"""The import direction of docs/discussion/design.md ('Layers': imports only point downward), read
from the source with ``ast`` so that a lazy import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "wherry"


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name ("wherry.proto.events", "asyncio")
    line: int
    typing_only: bool  # under ``if TYPE_CHECKING:``
    lazy: bool = False  # inside a function: run when it is called, not when the module is imported


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> list[Import]:
    """Every module ``path`` imports, relative imports resolved against its package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    typing_lines: set[int] = set()
    function_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                for inner in ast.walk(child):
                    if hasattr(inner, "lineno"):
                        typing_lines.add(inner.lineno)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for child in node.body:
                for inner in ast.walk(child):
                    if hasattr(inner, "lineno"):
                        function_lines.add(inner.lineno)

    def kinds(line: int) -> tuple[bool, bool]:
        return line in typing_lines, line in function_lines

    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(alias.name, node.lineno, *kinds(node.lineno)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            for name in names:
                found.append(Import(name, node.lineno, *kinds(node.lineno)))
    return found


@dataclass(frozen=True)
class Rule:
    layer: str  # a subpackage of wherry, or the name of the modules in ``paths``
    allowed: tuple[str, ...]  # the parts of wherry it may import at run time
    typing_allowed: tuple[str, ...]  # parts it may import only under TYPE_CHECKING
    forbidden: tuple[str, ...]  # modules (and their submodules) it must never import
    why: str
    paths: tuple[str, ...] = ()  # the layer's files (under wherry/), when it is not a whole folder


# The loop primitives: which library runs, and what code above the backends may use of it without
# naming one (wherry.compose, the entry points, the backends). Neutral ground kept inside
# wherry/backends, each library's own beside its backend; importing one runs the ``__init__`` of
# the packages it sits in, which therefore import nothing.
PRIMITIVES = {
    "wherry.backends.primitives": "backends/primitives.py",
    "wherry.backends.asyncio.primitives": "backends/asyncio/primitives.py",
    "wherry.backends.trio.primitives": "backends/trio/primitives.py",
}
PRIMITIVES_PACKAGES = {
    "wherry.backends": "backends/__init__.py",
    "wherry.backends.asyncio": "backends/asyncio/__init__.py",
    "wherry.backends.trio": "backends/trio/__init__.py",
}
TRIO_PRIMITIVES = "wherry.backends.trio.primitives"  # the one that imports trio


RULES = [
    Rule(
        "proto",
        allowed=("wherry.proto",),
        typing_allowed=(),
        forbidden=("asyncio", "trio", "anyio", "socket", "ssl", "time", "selectors", "uvloop"),
        why="protocol cores are sans-IO: no loop, no socket, no clock",
    ),
    Rule(
        "asgi",
        allowed=("wherry.asgi", "wherry.proto", "wherry.contracts"),
        typing_allowed=(),
        forbidden=("asyncio", "trio", "anyio", "socket", "uvloop"),
        why="ASGI semantics are written once for every backend",
    ),
    Rule(
        "connection",
        allowed=(
            "wherry.connection",
            "wherry.asgi",
            "wherry.proto",
            "wherry.contracts",
            "wherry.logs",
            "wherry.metrics",
        ),
        typing_allowed=("wherry.config", "wherry.tls"),
        forbidden=("asyncio", "trio", "anyio", "socket", "selectors", "uvloop"),
        why="connection drivers sit on the protocol and ASGI layers only, and know no event loop: "
        "what they need of one is the backend's Runtime and Transport (wherry/contracts.py)",
    ),
    Rule(
        "primitives",
        allowed=tuple(PRIMITIVES),
        typing_allowed=("wherry.asgi",),
        forbidden=("anyio", "uvloop"),
        why="the loop primitives are neutral ground for the server and for wherry.compose alike: "
        "they import one another only, no backend",
        paths=tuple(PRIMITIVES.values()),
    ),
    Rule(
        "backends",
        allowed=(
            "wherry.backends",
            "wherry.contracts",
            "wherry.connection",
            "wherry.asgi",
            "wherry.proto",
            "wherry.config",
            "wherry.sockets",
            "wherry.tls",
            "wherry.logs",
        ),
        typing_allowed=(),
        forbidden=("wherry.main", "wherry.cli"),
        why="backends never reach up to the entry points",
    ),
    Rule(
        "supervisor",
        allowed=(
            "wherry.supervisor",
            "wherry.config",
            "wherry.main",
            "wherry.sockets",
            "wherry.logs",
            "wherry.metrics",
        ),
        typing_allowed=(),
        forbidden=("asyncio", "trio", "anyio", "uvloop"),
        why="the supervisor manages processes and runs no event loop (a worker enters wherry.main)",
    ),
]


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def files_of(rule: Rule) -> list[Path]:
    if rule.paths:
        return [PACKAGE / path for path in rule.paths if (PACKAGE / path).is_file()]
    return sorted((PACKAGE / rule.layer).rglob("*.py"))


def test_every_layer_of_the_rules_exists() -> None:
    """The rules name real packages with source in them, and real files (a renamed layer or module
    must not escape them)."""
    for rule in RULES:
        files = files_of(rule)
        assert files, f"wherry/{rule.layer} has no Python files"
        if rule.paths:
            assert len(files) == len(rule.paths), f"{rule.layer}: not every one of {rule.paths} exists"


@pytest.mark.parametrize("rule", RULES, ids=[r.layer for r in RULES])
def test_imports_point_downward(rule: Rule) -> None:
    """docs/discussion/design.md, 'Layers': each layer imports only the layers below it."""
    problems = []
    for path in files_of(rule):
        for imp in imports_of(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{imp.line} imports {imp.module}"
            if within(imp.module, rule.forbidden):
                problems.append(where)
            elif imp.module.split(".")[0] == "wherry":
                allowed = rule.allowed + (rule.typing_allowed if imp.typing_only else ())
                if not within(imp.module, allowed):
                    problems.append(where)
    assert not problems, f"{rule.why}:\n" + "\n".join(problems)


def test_contracts_stand_on_nothing() -> None:
    """wherry/contracts.py, the seams every layer is typed against, imports nothing of Wherry and no
    event loop: it is types only."""
    found = imports_of(PACKAGE / "contracts.py")
    assert [i.module for i in found if i.module.startswith("wherry")] == []
    assert not [i.module for i in found if within(i.module, ("asyncio", "trio", "anyio", "uvloop"))]


def test_logs_is_a_leaf() -> None:
    """wherry/logs.py (log-safe text, formatters) imports nothing from wherry, so the drivers may
    use it without reaching up a layer."""
    found = imports_of(PACKAGE / "logs.py")
    wherry_imports = [i.module for i in found if i.module.startswith("wherry")]
    assert wherry_imports == []


def test_metrics_is_a_leaf() -> None:
    """wherry/metrics.py (counters, histogram bounds, snapshots) imports nothing from wherry, so the
    server that counts and the supervisor that renders may both use it."""
    found = imports_of(PACKAGE / "metrics.py")
    assert [i.module for i in found if i.module.startswith("wherry")] == []


def test_the_import_reader_resolves_relative_imports(tmp_path: Path) -> None:
    """The checker itself: relative imports and TYPE_CHECKING blocks are read correctly."""
    source = PACKAGE / "connection" / "context.py"
    found = {(i.module, i.typing_only) for i in imports_of(source)}
    assert ("wherry.contracts", False) in found
    assert ("wherry.config", True) in found


def test_the_packages_of_the_primitives_import_nothing() -> None:
    """Importing a primitives module runs the ``__init__`` of wherry/backends (and of its asyncio or
    trio folder): they import nothing, so the primitives stay neutral ground inside the backends."""
    for module, path in PRIMITIVES_PACKAGES.items():
        found = [i.module for i in imports_of(PACKAGE / path) if i.module != "__future__"]
        assert found == [], f"{module} imports {found}"


def test_trio_is_imported_only_once_trio_runs() -> None:
    """trio is imported by the trio primitives alone, and they are imported only from inside a
    function of the other primitives (called when trio runs the caller): importing
    ``wherry.backends.primitives`` loads no trio, whichever library the server then runs on."""
    problems = []
    for module, path in PRIMITIVES.items():
        for imp in imports_of(PACKAGE / path):
            if imp.typing_only:
                continue
            where = f"wherry/{path}:{imp.line} imports {imp.module}"
            if within(imp.module, ("trio",)) and module != TRIO_PRIMITIVES:
                problems.append(where)
            elif within(imp.module, (TRIO_PRIMITIVES,)) and not imp.lazy:
                problems.append(where + " when it is imported")
    assert not problems, "\n".join(problems)


NEUTRAL_IMPORTS = textwrap.dedent(
    """
    import json, sys, types

    package = types.ModuleType("wherry")  # wherry's own __init__ imports the server: left out
    package.__path__ = [sys.argv[1]]
    sys.modules["wherry"] = package
    loaded = {}
    for module in json.loads(sys.argv[2]):
        __import__(module)
        loaded[module] = sorted(m for m in sys.modules if m.split(".")[0] in ("wherry", "trio"))
    print(json.dumps(loaded))
    """
)


def test_importing_the_primitives_loads_no_backend_and_no_trio() -> None:
    """What importing the primitives loads, in a fresh interpreter: the neutral module and the
    asyncio one load no other module of wherry's, and no trio; the trio ones load trio, and still
    no backend."""
    order = ["wherry.backends.primitives", "wherry.backends.asyncio.primitives", TRIO_PRIMITIVES]
    out = subprocess.run(
        [sys.executable, "-c", NEUTRAL_IMPORTS, str(PACKAGE), json.dumps(order)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    neutral = ["wherry", "wherry.backends", "wherry.backends.primitives"]
    assert loaded["wherry.backends.primitives"] == neutral
    with_asyncio = sorted([*neutral, "wherry.backends.asyncio", "wherry.backends.asyncio.primitives"])
    assert loaded["wherry.backends.asyncio.primitives"] == with_asyncio
    with_trio = loaded[TRIO_PRIMITIVES]
    assert "trio" in with_trio
    assert [m for m in with_trio if m.startswith("wherry")] == sorted(
        [*with_asyncio, "wherry.backends.trio", TRIO_PRIMITIVES]
    )


def test_compose_uses_no_server_internals() -> None:
    """wherry/compose.py is a plain ASGI app (it must run under any ASGI server): it builds on the
    ASGI layer, the option parsers, the importer, the log helpers and the neutral loop primitives
    (``wherry.backends.primitives``, which load no backend), never on the server, the backends or
    the entry points."""
    allowed = ("wherry.asgi", "wherry.config", "wherry.importer", "wherry.logs", "wherry.backends.primitives")
    found = [i.module for i in imports_of(PACKAGE / "compose.py") if i.module.startswith("wherry")]
    assert found and all(within(name, allowed) for name in found), found
