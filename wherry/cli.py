"""The command line, generated from the option table in ``config.py`` (never written option by
option)."""

from __future__ import annotations

import sys
from typing import Any

import click

from .config import OPTIONS, Config, ConfigError, Option
from .main import run

_METAVARS = {"int": "INTEGER", "float": "SECONDS", "path": "PATH", "str": "TEXT", "list": "TEXT"}


def _click_param(option: Option) -> click.Parameter | None:
    if option.name == "app":
        return click.Argument(["app"], required=False, metavar="APP")
    flags = list(option.flags) or [option.primary_flag]
    if option.kind == "bool" and option.takes_value:
        # uvicorn's form, "--flag true|false"; the bare flag means true and "--no-flag" false
        # (rewritten by _ValueFlags before parsing).
        return click.Option(
            [*flags, option.name],
            type=click.BOOL,
            is_flag=False,
            flag_value=True,
            default=None,
            help=option.help,
        )
    if option.kind == "bool":
        primary = flags[0]
        decls = [f"{primary}/--no-{primary[2:]}", *flags[1:]]
        return click.Option([*decls, option.name], default=None, help=option.help)
    kwargs: dict[str, Any] = {"help": option.help, "default": None}
    if option.kind == "choice":
        kwargs["type"] = click.Choice((*option.choices, *option.substitute_names))
    else:
        kwargs["metavar"] = option.metavar or _METAVARS.get(option.kind, "TEXT")
    if option.kind == "list":
        kwargs["multiple"] = True
        kwargs["default"] = ()
    return click.Option([*flags, option.name], **kwargs)


def _help_with_defaults(option: Option) -> str:
    default = option.default
    if option.kind == "bool" and default is not None:
        default = "on" if default else "off"
    shown = [] if default in (None, [], "") else [f"default: {default}"]
    shown.append("env " + ", ".join(option.all_envs))
    return f"{option.help}  [{'; '.join(shown)}]"


class _ValueFlags(click.Command):
    """Reads ``--no-NAME`` as ``--NAME false`` for the bool options whose flag takes a value."""

    negations = {f"--no-{o.primary_flag[2:]}": o.primary_flag for o in OPTIONS if o.takes_value}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        for arg in args:
            if arg == "--":
                rewritten.extend(args[len(rewritten) :])
                break
            if arg in self.negations:
                rewritten.extend((self.negations[arg], "false"))
            else:
                rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


def _build() -> click.Command:
    params = []
    for option in OPTIONS:
        param = _click_param(option)
        if param is None:
            continue
        if isinstance(param, click.Option):
            param.help = _help_with_defaults(option)
        params.append(param)

    def callback(**values: Any) -> None:
        ctx = click.get_current_context()
        given: dict[str, Any] = {}
        for option in OPTIONS:
            source = ctx.get_parameter_source(option.name)
            value = values.get(option.name)
            if option.kind == "list":
                if value:
                    given[option.name] = list(value)
            elif source == click.core.ParameterSource.COMMANDLINE and value is not None:
                given[option.name] = value
        try:
            config = Config.from_sources(given)
        except (ConfigError, OSError) as exc:
            raise click.UsageError(str(exc)) from None
        if not config.app and not (config.mount or config.route):
            raise click.UsageError(
                "missing APP ('module:attribute'), or WHERRY_APP, or 'app' in --config (or --mount / --route)"
            )
        run(config=config)

    from . import __version__
    from ._build import describe

    command = _ValueFlags(
        "wherry",
        params=params,
        callback=callback,
        help="Serve the ASGI or WSGI application APP ('module:attribute').",
    )
    return click.version_option(
        __version__, prog_name="wherry", message=f"%(prog)s %(version)s ({describe()})"
    )(command)


def main(argv: list[str] | None = None) -> None:
    command = _build()
    command.main(args=argv if argv is not None else sys.argv[1:], prog_name="wherry")
