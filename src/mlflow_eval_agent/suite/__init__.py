"""Building and running evaluation suites (no agent code here).

- `spec.py`      SuiteSpec: the dataset and the scorers with their evidence; `scorer_problems`.
- `checks/`      code checks as data: the check language's engine (copied into each suite) and presets.
- `judges.py`    MLflow built-in scorers and judges: what exists, what each needs.
- `dataset.py`   stratified trace selection, records keeping trace ids, MLflow dataset registration.
- `preview.py`   a deterministic scorer's verdicts on its evidence before it is accepted.
- `render.py`    SuiteSpec -> evaluation/ (scorers.py with the check documents, the engine, run_eval.py, ...).
- `validate.py`  run the suite in a clean child process; evidence agreement; baseline.
- `offline.py`   the no-model planner: profile -> plan -> validated suite.

Agent tools (tools/suite.py), the offline planner and the CLI call these same functions.
"""
