# Databricks notebook source
# MAGIC %md
# MAGIC # mlflow-eval-agent
# MAGIC
# MAGIC Turns the traces in an MLflow experiment into a validated, runnable evaluation suite.
# MAGIC
# MAGIC 1. Fill in the widgets at the top: **experiment_id** and **volume_path** are required; the others have defaults.
# MAGIC 2. Run all cells. The first cells install this bundle's wheel and restart Python; the last one runs the agent.
# MAGIC
# MAGIC The model token is read from the secret scope (`secret_scope` / `secret_key`), never typed here; with
# MAGIC `model_auth` = `job` the job's own identity is used instead, with a token refreshed as the run goes.
# MAGIC Results land in `<volume_path>/sessions/<session_id>/`; see docs/databricks.md in the repository.

# COMMAND ----------

# Widgets mirror the command-line flags and the bundle's variables; a job sets them as base_parameters.
dbutils.widgets.text("experiment_id", "", "Experiment ID (required)")
dbutils.widgets.text("volume_path", "", "Volume path (required)")
dbutils.widgets.text("session_id", "", "Session ID (blank: new)")
dbutils.widgets.text("max_iterations", "20", "Max sessions")
dbutils.widgets.text("max_budget_usd", "10", "Max budget (USD)")
dbutils.widgets.text("model", "databricks-claude-sonnet-4-5", "Model endpoint")
dbutils.widgets.text("agent_experiment_id", "", "Agent traces experiment")
dbutils.widgets.text("secret_scope", "mlflow-eval-agent", "Token secret scope")
dbutils.widgets.text("secret_key", "fm-api-token", "Token secret key")
dbutils.widgets.text("model_auth", "secret", "Model auth: secret or job")
dbutils.widgets.text("anthropic_base_url", "", "Model gateway URL (blank: this workspace)")
dbutils.widgets.text("wheel_dir", "", "Wheel folder (blank: ../dist)")

# COMMAND ----------

# Find the wheel that `databricks bundle deploy` built and synced beside this notebook: the job names
# the folder; opened by hand, it is ../dist from this notebook's own workspace path (serverless does
# not promise that the working directory is the notebook's folder).
import glob
import os


def notebook_folder():
    try:
        path = dbutils.notebook.entry_point.getDbutils().notebook().getContext().notebookPath().get()
    except Exception:
        return None
    for candidate in (path, "/Workspace" + path):  # the context gives /Users/...; files live under /Workspace
        if os.path.isdir(os.path.dirname(candidate)):
            return os.path.dirname(candidate)
    return None


wheel_dir = dbutils.widgets.get("wheel_dir").strip()
if not wheel_dir and notebook_folder():
    wheel_dir = os.path.normpath(os.path.join(notebook_folder(), "..", "dist"))
wheels = sorted(glob.glob(os.path.join(wheel_dir, "*.whl")), key=os.path.getmtime) if wheel_dir else []
if not wheels:
    raise FileNotFoundError(
        f"No mlflow-eval-agent wheel in {wheel_dir or 'the bundle (this notebook path is unknown)'}. Deploy the bundle "
        "again (docs/databricks.md, step 4: it builds dist/*.whl and uploads it beside this notebook), or point the "
        "wheel_dir widget at the folder that holds the wheel."
    )
wheel_path = wheels[-1]
print(f"Installing {wheel_path}")
# Two installs: the first brings the dependencies (nothing to do once they are there); the second
# replaces the bundle's own code even when a re-run brings the same version, which pip would skip.

# COMMAND ----------

# MAGIC %pip install --quiet $wheel_path

# COMMAND ----------

# MAGIC %pip install --quiet --force-reinstall --no-deps $wheel_path

# COMMAND ----------

dbutils.library.restartPython()

# COMMAND ----------

# Python restarted: read the widgets again and call the same entry point as the wheel job.
from mlflow_eval_agent.cli import main
from mlflow_eval_agent.databricks import cli_args

names = ["experiment_id", "volume_path", "session_id", "max_iterations", "max_budget_usd", "model",
         "agent_experiment_id", "secret_scope", "secret_key", "model_auth", "anthropic_base_url"]
values = {name: dbutils.widgets.get(name) for name in names}
missing = [name for name in ("experiment_id", "volume_path") if not values[name].strip()]
if missing:
    raise ValueError(
        f"Fill in the {' and '.join(missing)} widget{'s' if len(missing) > 1 else ''} at the top of the notebook "
        "(experiment_id: the MLflow experiment whose traces to evaluate; volume_path: "
        "/Volumes/<catalog>/<schema>/<volume> for the session), then run all cells again."
    )

argv = cli_args(values)
print("mlflow-eval-agent " + " ".join(argv))
exit_code = main(argv)
if exit_code != 0:
    raise RuntimeError(
        f"mlflow-eval-agent stopped with exit code {exit_code} (1: tasks failed or the run stopped on an error; "
        "2: a setting needs fixing). The reason is printed above; the session log is run.log in the session folder."
    )
