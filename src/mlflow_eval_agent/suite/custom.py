"""Custom scorer code: accepted only after it compiles, imports nothing forbidden, and runs.

The code is Python source defining exactly one public function (helpers start with `_`) whose
parameters are any of `inputs`, `outputs`, `expectations`, `trace`, returning True/False or
"yes"/"no" (or an `mlflow.entities.Feedback` holding one). The suite applies
`@scorer(name=...)` itself, so the code carries no decorator.

The static checks are a guard against code that reaches for files, the network or the process, not
a security sandbox: the code then runs in a child process with a clean environment and a timeout.
"""

from __future__ import annotations

import ast
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sandbox import clean_env, run_python

ALLOWED_MODULES = frozenset({
    "json", "re", "math", "statistics", "datetime", "collections", "itertools", "functools", "typing",
    "string", "difflib", "unicodedata", "decimal", "fractions", "dataclasses", "enum", "textwrap",
    "mlflow.entities",
})
FORBIDDEN_CALLS = frozenset({"eval", "exec", "compile", "open", "__import__", "input", "breakpoint", "globals", "locals", "vars", "exit", "quit", "memoryview"})
SCORER_PARAMS = ("inputs", "outputs", "expectations", "trace")
RUNNER = Path(__file__).with_name("_custom_runner.py")
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_CALL_TIMEOUT_S = 10.0


class CustomCodeError(ValueError):
    """Why custom scorer code was rejected, in a sentence the author can act on."""


@dataclass(frozen=True)
class CustomCode:
    function: str
    params: tuple[str, ...]
    top_level_names: tuple[str, ...]


@dataclass
class CustomRun:
    """Verdicts of the custom scorer on sample traces (trace id -> passed) and their rationales."""

    verdicts: dict[str, bool] = field(default_factory=dict)
    rationales: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def analyse(code: str) -> CustomCode:
    """Static checks; raises CustomCodeError with the first problem."""
    try:
        tree = ast.parse(code, filename="<custom scorer>")
        compile(tree, "<custom scorer>", "exec")
    except SyntaxError as exc:
        raise CustomCodeError(f"the code does not compile: line {exc.lineno}: {exc.msg}") from None
    _check_imports(tree)
    _check_calls(tree)
    _check_top_level(tree)
    func = _the_function(tree)
    return CustomCode(function=func.name, params=tuple(a.arg for a in func.args.args), top_level_names=tuple(_top_level_names(tree)))


def _check_imports(tree: ast.Module) -> None:
    allowed = ", ".join(sorted(ALLOWED_MODULES))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise CustomCodeError(f"line {node.lineno}: relative imports are not allowed")
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for module in modules:
            if not any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES):
                raise CustomCodeError(f"line {node.lineno}: importing {module!r} is not allowed; allowed modules: {allowed}")


def _check_calls(tree: ast.Module) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            raise CustomCodeError(f"line {node.lineno}: calling {node.func.id}() is not allowed in a scorer")
        if isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr.endswith("__"):
            raise CustomCodeError(f"line {node.lineno}: dunder attribute access ({node.attr}) is not allowed in a scorer")


def _check_top_level(tree: ast.Module) -> None:
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assign, ast.AnnAssign)
    for index, node in enumerate(tree.body):
        is_docstring = index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        if not (isinstance(node, allowed) or is_docstring):
            raise CustomCodeError(
                f"line {node.lineno}: only imports, constants and function definitions may appear at the top level "
                f"(found {type(node).__name__}); put the logic inside the scorer function"
            )


def _the_function(tree: ast.Module) -> ast.FunctionDef:
    public = [n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    if len(public) != 1:
        names = ", ".join(f.name for f in public) or "none"
        raise CustomCodeError(
            f"define exactly one public function (the scorer; helpers must start with '_'), found: {names}"
        )
    func = public[0]
    if func.decorator_list:
        raise CustomCodeError(f"line {func.lineno}: remove the decorator from {func.name}(); the suite applies @scorer(name=...) itself")
    args = func.args
    if args.vararg or args.kwarg or args.posonlyargs or args.kwonlyargs:
        raise CustomCodeError(f"{func.name}() must take plain named parameters from: {', '.join(SCORER_PARAMS)}")
    names = [a.arg for a in args.args]
    unknown = [n for n in names if n not in SCORER_PARAMS]
    if unknown or not names:
        raise CustomCodeError(
            f"{func.name}() parameters must be among {', '.join(SCORER_PARAMS)} (got: {', '.join(names) or 'none'}); "
            "MLflow passes them by name"
        )
    return func


def _top_level_names(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def run_custom(code: str, traces: list[Any], timeout_s: float = DEFAULT_TIMEOUT_S, per_call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S) -> CustomRun:
    """Analyse the code, then run it on `traces` (MLflow Trace objects) in a child process.

    Raises CustomCodeError when it does not load, raises, returns something other than a bool or
    "yes"/"no", takes longer than `per_call_timeout_s` on one trace, or the whole run takes longer
    than `timeout_s`.
    """
    parsed = analyse(code)
    if not traces:
        raise CustomCodeError("no sample traces to run the scorer on: set the dataset first")
    with tempfile.TemporaryDirectory(prefix="custom-scorer-") as folder:
        job = Path(folder) / "job.json"
        payload = {"code": code, "function": parsed.function, "params": list(parsed.params), "per_call_timeout_s": per_call_timeout_s,
                   "traces": [t.to_json() for t in traces]}
        job.write_text(json.dumps(payload), encoding="utf-8")
        result = run_python([str(RUNNER), str(job)], timeout_s=timeout_s, env=clean_env(), cwd=folder)
    events = _events(result.stdout)
    if result.timed_out:
        started = [e["trace_id"] for e in events if e["event"] == "start"]
        where = f" while scoring trace {started[-1]}" if started else " before scoring the first trace"
        raise CustomCodeError(f"{parsed.function}() timed out after {timeout_s:.0f} s{where}; make it cheaper or remove loops that may not end")
    return _outcome(parsed.function, events, result, per_call_timeout_s)


def _outcome(function: str, events: list[dict[str, Any]], result: Any, per_call_s: float) -> CustomRun:
    run = CustomRun(seconds=result.seconds)
    for event in events:
        line = f" (line {event['line']})" if event.get("line") else ""
        if event["event"] == "load_error":
            raise CustomCodeError(f"the code failed while loading: {event['error']}{line}")
        if event["event"] == "timeout":
            raise CustomCodeError(
                f"{function}() timed out: it took longer than {per_call_s:g} s on trace {event['trace_id']}; "
                "make it cheaper or remove loops that may not end"
            )
        if event["event"] == "raised":
            raise CustomCodeError(f"{function}() raised {event['error']}{line} on trace {event['trace_id']}")
        if event["event"] == "bad_value":
            raise CustomCodeError(
                f"{function}() {event['error']} on trace {event['trace_id']}; return True/False or 'yes'/'no' "
                "(other strings disappear from MLflow's metrics)"
            )
        if event["event"] == "result":
            run.verdicts[event["trace_id"]] = bool(event["passed"])
            run.rationales[event["trace_id"]] = event.get("rationale", "")
    if result.returncode != 0 or not run.verdicts:
        raise CustomCodeError(f"the scorer process failed (exit {result.returncode}): {result.tail(600)}")
    return run


def _events(stdout: str) -> list[dict[str, Any]]:
    events = []
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the scorer printed something of its own
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events
