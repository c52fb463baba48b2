"""mlflow-eval-agent: from MLflow traces to a validated, runnable evaluation suite."""

__version__ = "0.1.0"
