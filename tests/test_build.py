"""Which build runs (compiled with mypyc or pure Python), and the rules the compiled modules keep
(docs/discussion/compiled.md).

``scripts/dev.py test`` runs the suite on both builds and says which one it expects through
``WHERRY_EXPECT_BUILD`` (``compiled`` or ``pure``), so a run can never test the wrong build unnoticed.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.machinery import EXTENSION_SUFFIXES
from importlib.resources import files
from pathlib import Path

import pytest

import wherry
from wherry._build import COMPILED_MODULES, is_extension

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "wherry"
EXPECTED = os.environ.get("WHERRY_EXPECT_BUILD", "")


def source_of(module: str) -> Path:
    return ROOT / Path(*module.split(".")).with_suffix(".py")


def test_version_names_the_build() -> None:
    """``wherry --version`` says which build runs, and on which Python."""
    result = subprocess.run(
        [sys.executable, "-m", "wherry", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    build = "compiled with mypyc" if wherry.COMPILED else "pure Python"
    python = f"CPython {sys.version_info[0]}.{sys.version_info[1]}"
    assert result.stdout.strip() == f"wherry {wherry.__version__} ({build}, {python})"


def test_the_expected_build_runs() -> None:
    """With ``WHERRY_EXPECT_BUILD`` set, every hot module is (``compiled``) or none is (``pure``) a
    mypyc extension module; without it, the build is at least never half compiled."""
    compiled = [module for module in COMPILED_MODULES if is_extension(module)]
    if EXPECTED == "compiled":
        assert compiled == list(COMPILED_MODULES)
        assert wherry.COMPILED
    elif EXPECTED == "pure":
        assert compiled == []
        assert not wherry.COMPILED
    else:
        assert EXPECTED == "", f"WHERRY_EXPECT_BUILD must be 'compiled' or 'pure', not {EXPECTED!r}"
        assert compiled in ([], list(COMPILED_MODULES))
        assert bool(compiled) == wherry.COMPILED


@pytest.mark.skipif(not wherry.COMPILED, reason="the pure build has no extension modules")
def test_the_compiled_build_is_not_older_than_its_sources() -> None:
    """A compiled module built in place shadows its source: one edited since the build means the
    tests would run old code (``pip install -e .`` or ``scripts/dev.py test`` rebuilds)."""
    stale = []
    for module in COMPILED_MODULES:
        extension = Path(sys.modules[module].__file__ or "") if module in sys.modules else None
        if extension is None:
            __import__(module)
            extension = Path(sys.modules[module].__file__ or "")
        source = source_of(module)
        if extension.parent == source.parent and source.stat().st_mtime > extension.stat().st_mtime + 1:
            stale.append(module)
    assert not stale, f"compiled before their sources last changed: {stale}"


@pytest.mark.skipif(not wherry.COMPILED, reason="the pure build has no extension modules")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="an ELF shared library")
def test_the_compiled_modules_call_each_other_directly() -> None:
    """setup.py's ``LINK_LOCAL_FLAGS``: a compiled function calls another of the shared library
    straight, not through the procedure linkage table (an indirect jump per call)."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) is not installed")
    library = Path(wherry.__file__).parent / f"_compiled__mypyc{EXTENSION_SUFFIXES[0]}"
    listing = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", str(library)], capture_output=True, text=True, check=True
    ).stdout
    assert "<CPyDef_proto___http1___H1Connection___receive_data>" in listing  # a function it holds
    through_plt = re.findall(r"call\s+\S+\s+<(CPyDef_\w+)@plt>", listing)
    assert not through_plt, f"{len(through_plt)} calls through the PLT, e.g. {through_plt[:3]}"


def test_the_package_ships_its_types() -> None:
    """PEP 561: ``py.typed`` marks the installed package as typed, so its users' type checkers read
    its annotations; pyproject.toml puts it in every build (the wheels list only declared data)."""
    marker = files("wherry") / "py.typed"
    assert marker.is_file()
    assert marker.read_text() == ""  # (a "partial" marker would mean stubs complete the package)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["wherry"]


def test_every_compiled_module_exists() -> None:
    assert all(source_of(module).is_file() for module in COMPILED_MODULES)
    assert "wherry.__main__" not in COMPILED_MODULES  # a compiled __main__ cannot run with -m


# ---------------------------------------------------------------- rules of the compiled source


def _except_names_reused(tree: ast.AST) -> list[str]:
    found = []
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            seen: dict[str, int] = {}
            for node in ast.walk(function):
                if isinstance(node, ast.ExceptHandler) and node.name:
                    if node.name in seen:
                        found.append(
                            f"{function.name}: 'as {node.name}', lines {seen[node.name]}, {node.lineno}"
                        )
                    seen.setdefault(node.name, node.lineno)
    return found


@pytest.mark.parametrize("module", COMPILED_MODULES)
def test_one_name_per_except_clause(module: str) -> None:
    """mypyc types a name bound by ``except X as name`` by its first clause: a second clause of
    another type binding the same name raises TypeError when compiled (mypyc issue 620)."""
    tree = ast.parse(source_of(module).read_text(encoding="utf-8"))
    assert _except_names_reused(tree) == []


@pytest.mark.parametrize("module", COMPILED_MODULES)
def test_no_ignored_wrong_assignment(module: str) -> None:
    """A value stored against its declared type (``x: T = None  # type: ignore``) is trusted by
    compiled code: a later access crashes instead of raising. Declare the attribute honestly."""
    text = source_of(module).read_text(encoding="utf-8")
    ignored = re.compile(r"type: ignore\[assignment")
    lines = [n + 1 for n, line in enumerate(text.splitlines()) if ignored.search(line)]
    assert lines == []


def _classes(path: Path) -> list[ast.ClassDef]:
    return [n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.ClassDef)]


def _base_names(cls: ast.ClassDef) -> set[str]:
    names = set()
    for base in cls.bases:
        if isinstance(base, ast.Name):
            names.add(base.id)
        elif isinstance(base, ast.Attribute):
            names.add(base.attr)
    return names


def _decorated_with(cls: ast.ClassDef, keyword: str) -> bool:
    for decorator in cls.decorator_list:
        if isinstance(decorator, ast.Call) and any(k.arg == keyword for k in decorator.keywords):
            return True
    return False


def test_compiled_classes_subclassed_by_interpreted_ones_allow_it() -> None:
    """An interpreted class may subclass a compiled one only if it says
    ``@mypyc_attr(allow_interpreted_subclasses=True)`` (or is a plain Python class)."""
    compiled_files = {source_of(module) for module in COMPILED_MODULES}
    compiled = {cls.name: cls for path in compiled_files for cls in _classes(path)}
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in compiled_files:
            continue
        for cls in _classes(path):
            for base in _base_names(cls) & compiled.keys():
                parent = compiled[base]
                if not (
                    "Protocol" in _base_names(parent)  # a typing.Protocol is no native class
                    or _decorated_with(parent, "allow_interpreted_subclasses")
                    or _decorated_with(parent, "native_class")
                ):
                    problems.append(f"{path.relative_to(ROOT)}: {cls.name}({base})")
    assert problems == []
