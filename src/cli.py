"""`python -m src.cli` from a checkout: the same app as the installed `mlflow-eval-agent` script."""

from mlflow_eval_agent.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
