"""The ``edl`` command line: registers the commands, and is the only place that turns errors into exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from evaluator import __version__
from evaluator.cli import board, check, competition, data, env, review, score, serve
from evaluator.cli.console import Interrupted, error, note
from evaluator.errors import INTERRUPTED_EXIT, EdlError, SubmissionError
from evaluator.power.gpu import number_cuda_devices_as_nvml

F = TypeVar("F", bound=Callable[..., Any])
INTERRUPTED_NOTE = "interrupted: results already written are intact"

app = typer.Typer(
    help="edl: score CIFAR-10 ONNX submissions by accuracy and energy (CPU + GPU joules).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: every option on one line, no "<bool>" beside flags
)
data_app = typer.Typer(help="The pinned CIFAR-10 test set.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")
keys_app = typer.Typer(help="The organiser's signing key.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(keys_app, name="keys")


def handled(func: F) -> F:
    """The library's errors, and Ctrl-C, as one line each on stderr and an exit code; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SubmissionError as exc:
            for problem in exc.problems:
                error(problem)
            raise typer.Exit(exc.exit_code) from None
        except EdlError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except Interrupted as exc:
            note(f"interrupted: {exc}")
            raise typer.Exit(INTERRUPTED_EXIT) from None
        except KeyboardInterrupt:
            note(INTERRUPTED_NOTE)
            raise typer.Exit(INTERRUPTED_EXIT) from None

    return wrapper  # type: ignore[return-value]


def _register(target: typer.Typer, name: str, func: Callable[..., Any], **settings: Any) -> None:
    target.command(name, **settings)(handled(func))


_register(app, "check", check.check)
_register(app, "score", score.score)
_register(app, "score-dir", score.score_dir)
_register(app, "leaderboard", board.leaderboard)
_register(app, "verify", board.verify)
_register(app, "review", review.review)
_register(app, "schema", board.schema)
_register(app, "env", env.env)
_register(app, "meter", env.meter, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
_register(data_app, "fetch", data.data_fetch)
_register(data_app, "info", data.data_info)
_register(keys_app, "init", board.keys_init)
_register(app, "serve", serve.serve)
_register(app, "submit", serve.submit)
for group_app, command_name, command in competition.commands(app):  # edl competition ..., edl team ...
    _register(group_app, command_name, command)


def _version_callback(value: bool) -> None:
    if value:
        print(f"edl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True, metavar="",
                                          help="Print the version and exit.")] = False,
) -> None:
    """edl: score CIFAR-10 ONNX submissions by accuracy and energy."""


def main() -> None:
    number_cuda_devices_as_nvml()
    try:
        app()
    except KeyboardInterrupt:
        note(INTERRUPTED_NOTE)
        sys.exit(INTERRUPTED_EXIT)
