"""The command line: `mlflow-eval-agent` (or `python -m src.cli` from a checkout).

Root options run the agent (`-a` autonomous, `-i` interactive, or a bare question asked once);
subcommands are registered by the modules listed in `COMMAND_MODULES`.
"""

from __future__ import annotations

import os
import sys

from . import analyze, demo, doctor, importer, monitor, root, validate
from ._app import app

# Each module defines register(app). Order is the order shown in --help.
COMMAND_MODULES = [root, analyze, importer, demo, validate, monitor, doctor]

for _module in COMMAND_MODULES:
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """The entry point shared by the console script, `python -m src.cli` and the notebook."""
    # Library behaviour, not our configuration: litellm (behind MLflow's judges) otherwise downloads
    # its price list at import, which hangs or fails offline.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        app(args=argv if argv is not None else sys.argv[1:], prog_name="mlflow-eval-agent")
    except SystemExit as exc:
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def run() -> None:
    """The console script: exit with main's code. A wheel task on Databricks calls this function and
    ignores what it returns, so a failure must raise SystemExit to mark the run failed; success returns."""
    code = main()
    if code:
        sys.exit(code)


__all__ = ["app", "main", "run"]
