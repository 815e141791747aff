"""Finding the application: ``module:attribute``, ``--factory``, ``--app-dir`` and
``--env-file``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


class AppImportError(Exception):
    """The application could not be imported; the message says why."""


def load_env_file(path: str) -> None:
    """Read ``NAME=value`` lines (``#`` comments, optional quotes, ``export``) into os.environ."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise AppImportError(f"cannot read env file {path!r}: {exc.strerror}") from None
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ[name.strip()] = value


def import_from_string(target: str) -> Any:
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise AppImportError(f"APP must look like 'module:attribute', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise
        raise AppImportError(f"could not import module {module_name!r}") from None
    obj: Any = module
    try:
        for attr in attrs.split("."):
            obj = getattr(obj, attr)
    except AttributeError:
        raise AppImportError(f"attribute {attrs!r} not found in module {module_name!r}") from None
    return obj


def load_app(target: Any, *, factory: bool = False, app_dir: str | None = ".") -> Any:
    """Return the application object named by ``target`` (or ``target`` itself if it is one)."""
    if isinstance(target, str):
        if app_dir is not None:
            path = os.path.abspath(app_dir)
            if sys.path[:1] != [path]:
                sys.path.insert(0, path)  # first, even if it is also further down the path
        app = import_from_string(target)
    else:
        app = target
    if factory:
        if not callable(app):
            raise AppImportError("--factory was given but the application is not callable")
        app = app()
    if not callable(app):
        raise AppImportError(f"the application {target!r} is not callable")
    return app
