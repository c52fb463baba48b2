"""The Typer app object, with a group that sends an unknown first word to the hidden `ask` command."""

from __future__ import annotations

from typing import Any

import click
import typer
from typer.core import TyperGroup


class AskFallbackGroup(TyperGroup):
    """`mlflow-eval-agent "why do my traces fail?"` runs `ask` instead of 'No such command'."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[Any, Any, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-") and "ask" in self.commands:
            args = ["ask", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=AskFallbackGroup,
    name="mlflow-eval-agent",
    help="Turn the traces in an MLflow experiment into a validated, runnable evaluation suite.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
