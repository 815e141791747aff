"""Finding the application: ``module:attribute``, ``--factory``, ``--app-dir`` and
``--env-file``."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from typing import Any

logger = logging.getLogger("wherry.error")


class AppImportError(Exception):
    """The application could not be imported; the message says why."""


def load_env_file(path: str) -> None:
    """Read a ``.env`` file into os.environ as python-dotenv reads it (uvicorn's ``--env-file``):
    ``NAME=value`` lines, ``export``, quotes, ``#`` comments (inline too) and ``${VAR}``
    expansion; a variable already set in the environment keeps its value."""
    from dotenv import dotenv_values

    try:
        with open(path, encoding="utf-8") as f:
            values = dotenv_values(stream=f, interpolate=True)
    except OSError as exc:
        raise AppImportError(f"cannot read env file {path!r}: {exc.strerror}") from None
    for name, value in values.items():
        if value is not None and name not in os.environ:
            os.environ[name] = value


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


def _takes_no_argument(obj: Any) -> bool:
    """``obj`` can be called with no argument: a factory, not an ASGI or WSGI application (a class
    is never taken for a factory: an ASGI 2 application is a class)."""
    if inspect.isclass(obj):
        return False
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in signature.parameters.values()
    )


def load_app(target: Any, *, factory: bool = False, app_dir: str | None = ".") -> Any:
    """Return the application object named by ``target`` (or ``target`` itself if it is one).

    Without ``factory``, a callable that takes no argument is taken for a factory and called,
    with a warning, as uvicorn does."""
    if isinstance(target, str):
        if app_dir is not None:
            path = os.path.abspath(app_dir)
            if sys.path[:1] != [path]:
                sys.path.insert(0, path)  # first, even if it is also further down the path
        app = import_from_string(target)
    else:
        app = target
    name = target if isinstance(target, str) else getattr(target, "__qualname__", repr(target))
    if factory:
        if not callable(app):
            raise AppImportError(f"--factory: {name!r} is not callable, so it is not a factory")
        if not _takes_no_argument(app):
            raise AppImportError(
                f"--factory: {name!r} takes arguments, so it is an application, not a factory: drop --factory"
            )
        app = app()
    elif callable(app) and _takes_no_argument(app):
        logger.warning(
            "%s takes no argument: calling it as an application factory (pass --factory to say so)",
            name,
        )
        app = app()
    if not callable(app):
        raise AppImportError(f"the application {name!r} is not callable")
    return app
