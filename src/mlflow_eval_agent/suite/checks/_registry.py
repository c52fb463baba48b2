"""The `@check` decorator: registers a preset (a factory of check rules) with its typed parameters.

A preset takes typed, documented parameters and returns the `fail_when` condition of a check in the
check language (plain data). The registry derives a pydantic model from the factory's signature (so
the agent gets precise errors for wrong parameters) and the parameter descriptions from its
docstring's `Args:` section (so the agent sees what each one means).
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..facts import TraceFacts

Verdict = tuple[bool, str]
Check = Callable[[Any, Any], Verdict]
Condition = dict[str, Any]
Reads = Literal["trace", "outputs"]
Prerequisite = Callable[[dict[str, Any], TraceFacts], "str | None"]

_ARG_LINE = re.compile(r"^(\w+):\s*(.*)$")


@dataclass(frozen=True)
class CheckInfo:
    name: str
    factory: Callable[..., Condition]
    summary: str
    description: str
    reads: tuple[Reads, ...]
    params: type[BaseModel]
    requires: Prerequisite | None = None

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validated parameters with defaults filled in; raises pydantic.ValidationError."""
        return self.params.model_validate(params).model_dump()

    def condition(self, params: dict[str, Any]) -> Condition:
        """The preset's `fail_when` condition for these parameters (ValidationError / ValueError)."""
        return self.factory(**self.validate_params(params))

    def rule(self, params: dict[str, Any]) -> dict[str, Any]:
        """The whole check document for these parameters."""
        from .engine import LANGUAGE_VERSION

        return {"version": LANGUAGE_VERSION, "fail_when": self.condition(params)}

    def build(self, params: dict[str, Any]) -> Check:
        """The compiled check: `run(trace, outputs) -> (passed, rationale)`."""
        from .engine import compile_check

        return compile_check(self.rule(params))

    def prerequisite_problem(self, params: dict[str, Any], facts: TraceFacts) -> str | None:
        return self.requires(params, facts) if self.requires else None

    def signature_text(self) -> str:
        fields = self.params.model_fields
        parts = [f"{n}{'' if f.is_required() else '=' + repr(f.default)}" for n, f in fields.items()]
        return f"{self.name}({', '.join(parts)})"


def parse_args_section(doc: str) -> dict[str, str]:
    """Argument descriptions from a Google-style `Args:` block (continuation lines joined)."""
    lines = inspect.cleandoc(doc).splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return {}
    args: dict[str, str] = {}
    current: str | None = None
    for line in lines[start + 1 :]:
        if line.strip() and not line.startswith(" "):
            break  # the next section
        match = _ARG_LINE.match(line.strip())
        if match and line.startswith("    ") and not line.startswith("        "):
            current = match.group(1)
            args[current] = match.group(2)
        elif current and line.strip():
            args[current] += " " + line.strip()
    return args


def _params_model(name: str, factory: Callable[..., Condition], docs: dict[str, str]) -> type[BaseModel]:
    hints = typing.get_type_hints(factory)
    fields: dict[str, Any] = {}
    for param in inspect.signature(factory).parameters.values():
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints[param.name], Field(default, description=docs.get(param.name, "")))
    config = ConfigDict(extra="forbid", title=f"{name} parameters")
    return create_model(f"{name}_params", __config__=config, **fields)


Factory = Callable[..., Condition]


def make_registry() -> tuple[dict[str, CheckInfo], Callable[..., Callable[[Factory], Factory]]]:
    """A registry and its decorator (one per library; the decorator returns the factory unchanged)."""
    registry: dict[str, CheckInfo] = {}

    def check(*, reads: tuple[Reads, ...], requires: Prerequisite | None = None) -> Callable[[Factory], Factory]:
        def register(factory: Factory) -> Factory:
            name = factory.__name__
            doc = inspect.getdoc(factory) or ""
            docs = parse_args_section(doc)
            body = doc.split("\nArgs:")[0].strip()
            registry[name] = CheckInfo(
                name=name,
                factory=factory,
                summary=" ".join(body.split("\n\n")[0].split()) if body else name,
                description=body,
                reads=reads,
                params=_params_model(name, factory, docs),
                requires=requires,
            )
            return factory

        return register

    return registry, check


CHECKS, check = make_registry()
