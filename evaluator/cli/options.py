"""Typer options built from the config dataclasses: no option is written twice.

``@config_options(SCORE)`` on a command whose parameters include ``config: ScoreConfig`` gives it
one ``--flag`` per option field that the command offers, and hands the function the built
``ScoreConfig`` instead. Defaults, help, choices and validation all come from ``evaluator.config``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from evaluator.config import OptionField, build, option_fields

F = TypeVar("F", bound=Callable[..., Any])

ModelArgument = Annotated[Path, typer.Argument(help="The .onnx submission", metavar="MODEL")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the JSON document on stdout and nothing else.",
                                          metavar="")]


def _cli_type(found: OptionField) -> Any:
    """The type typer parses: the field's own, or str where the option has a parser."""
    if found.spec.parse is not None:
        return str
    return found.hint


def _metavar(found: OptionField, cli_type: Any) -> str | None:
    if cli_type is bool:
        return ""  # a flag takes no value: no "<bool>" in --help
    if found.spec.choices:
        return "|".join(found.spec.choices)
    base = [t for t in typing.get_args(cli_type) if t is not type(None)] or [cli_type]
    names = {int: "INTEGER", float: "NUMBER", str: "TEXT", Path: "PATH"}
    return names.get(base[0])


def option_parameter(found: OptionField, command: str) -> inspect.Parameter:
    """One typer option for one config field."""
    cli_type = _cli_type(found)
    declarations = [found.flag]
    if cli_type is bool:
        declarations = [f"{found.flag}/--no-{found.flag.removeprefix('--')}"]
    default = found.default_for(command)
    if found.spec.show is not None and default is not None:
        default = found.spec.show(default)
    info = typer.Option(*declarations, help=found.spec.help, metavar=_metavar(found, cli_type),
                        envvar=found.spec.envvar or None, show_default=default is not None)
    return inspect.Parameter(found.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[cli_type, info])


def _config_classes(func: Callable[..., Any]) -> dict[str, type]:
    hints = typing.get_type_hints(func)
    return {name: hint for name, hint in hints.items() if dataclasses.is_dataclass(hint) and isinstance(hint, type)}


def config_options(command: str) -> Callable[[F], F]:
    """Replace a command's config-typed parameters by the options of those configs."""

    def decorate(func: F) -> F:
        configs = _config_classes(func)
        own = [p for name, p in inspect.signature(func, eval_str=True).parameters.items() if name not in configs]
        fields = {name: list(option_fields(cls, command)) for name, cls in configs.items()}
        generated = [option_parameter(found, command) for found_list in fields.values() for found in found_list]
        names = [p.name for p in own + generated]
        if len(names) != len(set(names)):
            raise TypeError(f"{func.__name__}: option names collide: {sorted(n for n in names if names.count(n) > 1)}")

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            for name, cls in configs.items():
                values = {}
                for found in fields[name]:
                    value = kwargs.pop(found.name)
                    if found.spec.parse is not None and isinstance(value, str):
                        value = found.spec.parse(value)
                    values[found.name] = value
                kwargs[name] = build(cls, values, command)
            return func(**kwargs)

        wrapper.__signature__ = inspect.Signature(own + generated)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {}
        del wrapper.__wrapped__  # typer must see the generated signature, not the function's own
        return typing.cast(F, wrapper)

    return decorate
