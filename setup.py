"""Build Wherry: the request path (``COMPILED_MODULES`` in wherry/_build.py) compiled with mypyc.

The metadata is in pyproject.toml; this file only adds the compiled extension modules.

- ``pip install .`` (or ``pip install -e .``, or ``pip wheel .``) builds the compiled build: it needs
  a C compiler and the Python headers, and mypy, pinned in pyproject.toml's ``[build-system]``.
- ``WHERRY_PURE=1`` asks for the pure-Python build (the same source, interpreted; a
  ``py3-none-any`` wheel). Without a working C compiler the build falls back to it, with a warning.
- ``MYPYC_OPT_LEVEL`` (default 3) and ``MYPYC_DEBUG_LEVEL`` (default 1) are passed to the C compiler,
  with ``LINK_LOCAL_FLAGS`` where it takes them.

``wherry --version`` tells which build runs. Why and how: docs/discussion/compiled.md.
"""

from __future__ import annotations

import ast
import os
import sys
import sysconfig
import tempfile
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
PURE_SWITCH = "WHERRY_PURE"


def compiled_modules() -> list[str]:
    """``COMPILED_MODULES`` of wherry/_build.py, read without importing the package."""
    tree = ast.parse((HERE / "wherry" / "_build.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise RuntimeError("wherry/_build.py defines no COMPILED_MODULES")


def warn(message: str) -> None:
    print(f"\nWARNING (wherry): {message}\n", file=sys.stderr, flush=True)


def c_compiler_works(flags: tuple[str, ...] = ()) -> bool:
    """A C compiler that finds Python.h (and takes ``flags``): compile a two-line extension source,
    discard it."""
    from distutils.ccompiler import new_compiler  # setuptools' bundled copy on 3.12+
    from distutils.errors import CCompilerError, DistutilsError
    from distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "probe.c"
        source.write_text("#include <Python.h>\nint wherry_probe(void) { return 0; }\n")
        try:
            compiler.compile(
                [str(source)],
                output_dir=tmp,
                include_dirs=[sysconfig.get_paths()["include"]],
                extra_postargs=list(flags),
            )
        except (CCompilerError, DistutilsError, OSError):
            return False
    return True


def pure_requested() -> bool:
    return os.environ.get(PURE_SWITCH, "").strip().lower() not in ("", "0", "false", "no")


LINK_LOCAL_FLAGS = ("-fno-semantic-interposition", "-fno-plt")
"""C compiler flags for the shared library of the compiled modules, each used if the compiler takes it."""

# setup.py runs once per PEP 517 hook; mypyc runs only for the ones that build extensions, not
# for the metadata queries (egg_info, dist_info, sdist) pip makes before.
BUILD_COMMANDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "install", "develop", "bdist_egg"}


def extensions() -> list[Extension]:
    if pure_requested() or not BUILD_COMMANDS.intersection(sys.argv[1:]):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        warn(
            "mypy (mypyc) is not installed in the build environment (a build without isolation?): "
            f"building the pure-Python package. Install the [build-system] requirements of "
            f"pyproject.toml, or set {PURE_SWITCH}=1 to ask for the pure build."
        )
        return []
    if not c_compiler_works():
        warn(
            "no working C compiler (or no Python headers) found: building the pure-Python "
            f"package, which is slower. Install gcc and the Python headers for the compiled "
            f"build, or set {PURE_SWITCH}=1 to ask for the pure build and silence this warning."
        )
        return []
    sources = [str(Path(*name.split(".")).with_suffix(".py")) for name in compiled_modules()]
    modules = mypycify(
        sources,
        # The library the compiled modules share, inside the package (not a top-level module named
        # by a hash): wherry/_compiled__mypyc.<abi tag>.so.
        group_name="wherry._compiled",
        opt_level=os.environ.get("MYPYC_OPT_LEVEL", "3"),
        debug_level=os.environ.get("MYPYC_DEBUG_LEVEL", "1"),
    )
    # The compiled modules share one library, whose functions call each other thousands of times
    # per request. With these flags (GCC, Clang) those calls are direct, not through the PLT, and
    # may be inlined: fewer instructions and instruction-cache misses per request
    # (docs/discussion/performance.md, "fourth pass").
    flags = tuple(flag for flag in LINK_LOCAL_FLAGS if c_compiler_works((flag,)))
    for module in modules:
        module.extra_compile_args = [*(module.extra_compile_args or []), *flags]
    return modules


setup(ext_modules=extensions())
