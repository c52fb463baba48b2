"""The end of `demo`, `-a` and `validate`: pass rates, where the suite is, the commands that run it,
re-validate it and browse it, and the report. Printed plainly (no wrapping): commands must copy."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from .store import SessionStore


def in_checkout() -> bool:
    """True when run from this project's own checkout (where `uv run` finds the environment)."""
    here = Path.cwd()
    return (here / "pyproject.toml").is_file() and (here / "src" / "cli.py").is_file()


def python_command() -> str:
    """The interpreter that has mlflow: this one (e.g. .venv/bin/python in a checkout)."""
    exe = Path(sys.executable)
    return shlex.quote(os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else str(exe))


def cli_command() -> str:
    return "uv run python -m src.cli" if in_checkout() else "mlflow-eval-agent"


def ui_command(tracking_uri: str) -> str | None:
    """How to browse a local store in the MLflow UI (a server is browsed at its own URL)."""
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        return None
    mlflow = "uv run mlflow" if in_checkout() else f"{python_command()} -m mlflow"
    return f"{mlflow} ui --backend-store-uri {shlex.quote(tracking_uri)}"


def suite_command(suite: Path, tracking_uri: str) -> str:
    shown = os.path.relpath(suite) if suite.is_relative_to(Path.cwd()) else str(suite)
    return f"MLFLOW_TRACKING_URI={shlex.quote(tracking_uri)} {python_command()} {shlex.quote(os.path.join(shown, 'run_eval.py'))}"


DEMO_AGENT = "mlflow_eval_agent.demo.agent"


def is_demo_store(tracking_uri: str, volume_path: str) -> bool:
    """The demo's own store (`<volume>/demo/mlflow.db`), whose traces the sample agent wrote."""
    if volume_path.startswith("/Volumes/") or not tracking_uri.startswith("sqlite:///"):
        return False
    return Path(tracking_uri.removeprefix("sqlite:///")) == Path(volume_path).expanduser().resolve() / "demo" / "mlflow.db"


def pass_rate_lines(run: Any) -> list[str]:
    """One line per scorer of a ValidationRun: status, pass rate, threshold."""
    width = max((len(n) for n in run.scorers), default=10)
    lines = []
    for name, s in run.scorers.items():
        rate = "-" if s.pass_rate is None else f"{s.pass_rate:.1%}"
        minimum = "" if s.threshold is None else f" (min {s.threshold:.0%})"
        why = f"  {s.reason}" if s.status == "SKIPPED" and s.reason else ""
        lines.append(f"  {name:<{width}}  {s.status:<7} {rate:>6}{minimum}{why}")
    return lines


def print_results(console: Console, store: SessionStore, tracking_uri: str, volume_path: str, published: Any = None) -> None:
    """Everything a user needs next, after a run that built or re-ran a suite."""
    from .suite.validate import load_report

    validation = load_report(store)
    say = lambda text="": console.print(text, highlight=False, markup=False, soft_wrap=True)  # noqa: E731
    if validation is not None and validation.latest.ok:
        run = validation.latest
        say()
        say(f"Suite run {run.run_name or ''} (evaluation run {run.run_id}): gate {run.gate or '-'}, {run.data}")
        for line in pass_rate_lines(run):
            say(line)
    suite = store.path("evaluation")
    if (suite / "run_eval.py").is_file():
        say()
        say(f"The suite is in {suite}")
        say("Run it with:")
        say()
        say(f"    {suite_command(suite, tracking_uri)}")
        say()
        if is_demo_store(tracking_uri, volume_path):
            say("Run it against the sample agent as it is now (the gate passes), and with a regression injected (every")
            say("order lookup fails: the gate fails, naming the scorers and records that regressed):")
            say()
            say(f"    {suite_command(suite, tracking_uri)} --predict-fn {DEMO_AGENT}:predict")
            say(f"    {suite_command(suite, tracking_uri)} --predict-fn {DEMO_AGENT}:predict_regressed")
            say()
        root = os.path.abspath(os.path.expanduser(volume_path)) if not volume_path.startswith("/Volumes/") else volume_path
        say(f"Re-run it and compare with the baseline: {cli_command()} validate --session-id {store.session_id} --volume-path {shlex.quote(root)}")
    if published is not None and published.path is not None:
        attached = f" (attached to evaluation run {published.run_id})" if published.run_id else ""
        say(f"Report: {published.path}{attached}")
        for note in published.notes:
            say(f"note: {store.redactor.text(note)}")
    ui = ui_command(tracking_uri)
    if ui:
        say(f"Browse the runs, traces and verdicts: {ui}")
