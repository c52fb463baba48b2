"""SuiteSpec -> `<session>/evaluation/`: scorers.py, the check engine, run_eval.py, dataset.json, README.md,
and the pytest entry (test_suite.py with its conftest.py, copied verbatim from the templates).

The model never writes code: every file here is rendered from the validated spec. Code checks are
data — `scorers.py` holds their documents as a Python literal (verified to be nothing but
literals) and evaluates them with `_engine.py`, a verbatim copy of the reviewed check engine;
rationales are scrubbed of secrets with `_redaction.py`, a verbatim copy too. Text from the model
(names, reasons, judge instructions) appears only inside string literals or comments stripped of
line breaks. The folder is self-contained: a CI job needs `mlflow` and `google-re2`.
"""

from __future__ import annotations

import ast
import inspect
import json
import keyword
import pprint
from importlib import resources
from typing import Any

from .. import redaction
from ..settings import JUDGE_CREDENTIALS
from ..store import SessionStore
from ..store.base import check_session_id
from . import cost_model
from .checks import engine
from .judges import BUILTINS
from .spec import EVAL_DIR, BuiltinScorer, CheckScorer, GuidelinesScorer, JudgeScorer, ScorerSpec, SuiteSpec, suite_name
from .validate import ValidationReport

ENGINE_FILE = "_engine.py"
REDACTION_FILE = "_redaction.py"
COST_FILE = "_cost.py"  # the judge cost model (cost_model.py), for run_eval.py's forecast before its judges run
PYTEST_FILES = ("test_suite.py", "conftest.py")
_CONSTANTS_START = "# --- suite constants (rendered) ---"
_CONSTANTS_END = "# --- end of suite constants ---"


class RenderError(Exception):
    """The spec cannot be rendered into a working suite; the message says why."""


def render_suite(spec: SuiteSpec, store: SessionStore, validation: ValidationReport | None = None) -> list[str]:
    """Write the suite files into the session; returns their relative paths."""
    if spec.dataset is None:
        raise RenderError("the suite has no dataset yet: set the dataset before rendering")
    if not spec.scorers:
        raise RenderError("the suite has no scorers yet: add at least one before rendering")
    sources = {
        "scorers.py": scorers_source(spec),
        "run_eval.py": run_eval_source(spec, store.session_id),
        ENGINE_FILE: inspect.getsource(engine),
        REDACTION_FILE: inspect.getsource(redaction),
        COST_FILE: inspect.getsource(cost_model),
        **{name: _template(name) for name in PYTEST_FILES},
    }
    for name, text in sources.items():
        try:
            compile(text, name, "exec")
        except SyntaxError as exc:  # a bug in rendering, not in the spec
            raise RenderError(f"rendered {name} does not compile (line {exc.lineno}: {exc.msg})") from None
    written = [store.relative(store.write_text(f"{EVAL_DIR}/{name}", text)) for name, text in sources.items()]
    written.append(store.relative(store.write_json(f"{EVAL_DIR}/dataset.json", dataset_payload(spec))))
    written.append(store.relative(store.write_text(f"{EVAL_DIR}/README.md", readme(spec, validation))))
    return written


# --- scorers.py ---------------------------------------------------------------------------------
def scorers_source(spec: SuiteSpec) -> str:
    checks = [s for s in spec.scorers if isinstance(s, CheckScorer)]
    code_builtins = [s for s in spec.scorers if isinstance(s, BuiltinScorer) and not s.needs_judge]
    judge_specs = [s for s in spec.scorers if s.needs_judge]
    documents = {s.name: _document(s) for s in checks}
    builtin_imports = sorted({_builtin_name(s) for s in code_builtins})
    parts = [
        _scorers_docstring(spec),
        "from __future__ import annotations\n",
        "import os\n",
        "from mlflow.entities import Feedback",
        "from mlflow.genai.scorers import " + ", ".join(["scorer", *builtin_imports]) + "\n",
        _ENGINE_IMPORT,
        "\n# ----- check documents (data, evaluated by _engine.py; see docs/checks.md of mlflow-eval-agent) -----",
        "CHECKS = " + literal(documents) + "\n",
        _CODE_SCORER_HELPER,
        _code_scorers_list(checks, code_builtins),
        _judges_function(judge_specs),
        _gating_constants(spec),
    ]
    return "\n".join(parts)


_ENGINE_IMPORT = '''
try:  # imported as part of a package
    from ._engine import compile_check
    from ._redaction import credential_values, scrub
except ImportError:  # run from this folder: python run_eval.py
    from _engine import compile_check
    from _redaction import credential_values, scrub
'''

_CODE_SCORER_HELPER = '''
def _code_scorer(name):
    """An MLflow scorer evaluating the check document CHECKS[name]. A failing verdict names the span it
    points at in its metadata (MLflow attaches assessments to the root span); rationales carry no secrets."""
    check = compile_check(CHECKS[name])
    secrets = credential_values(os.environ)

    @scorer(name=name)
    def score(outputs=None, trace=None):
        passed, rationale, spans = check.verdict(trace, outputs)
        where = {"eval_agent.span_id": str(spans[0].span_id), "eval_agent.span_name": str(spans[0].name)} if spans else None
        return Feedback(value=bool(passed), rationale=scrub(rationale, secrets), metadata=where)

    return score
'''


def _document(scorer: CheckScorer) -> dict[str, Any]:
    try:
        rule = scorer.rule()
        engine.compile_check(rule)
    except (KeyError, ValueError) as exc:
        raise RenderError(f"check {scorer.name} is not valid: {exc}") from None
    return rule


def literal(value: Any) -> str:
    """Python source for JSON data, proven to be nothing but literals (no names, no calls)."""
    text = pprint.pformat(value, indent=1, width=110, sort_dicts=False)
    tree = ast.parse(text, mode="eval")
    allowed = (ast.Expression, ast.Constant, ast.Dict, ast.List, ast.Tuple, ast.UnaryOp, ast.USub, ast.Load)
    if not all(isinstance(node, allowed) for node in ast.walk(tree)) or ast.literal_eval(text) != value:
        raise RenderError("a check document holds something other than JSON data")
    return text


def comment(text: str, limit: int = 300) -> str:
    """Text for a `#` comment: one line, printable characters only."""
    return "".join(ch if ch.isprintable() else " " for ch in " ".join(str(text).split()))[:limit]


def _builtin_name(s: BuiltinScorer) -> str:
    if s.builtin not in BUILTINS or not s.builtin.isidentifier():
        raise RenderError(f"scorer {s.name}: {s.builtin!r} is not a known MLflow built-in scorer")
    return s.builtin


def _builtin_kwargs(s: BuiltinScorer) -> str:
    for key in s.params:
        if not key.isidentifier() or keyword.iskeyword(key) or key.startswith("_"):
            raise RenderError(f"scorer {s.name}: parameter name {key!r} is not a plain identifier")
    return ", ".join(f"{k}={literal(v)}" for k, v in {"name": s.name, **s.params}.items())


def _scorers_docstring(spec: SuiteSpec) -> str:
    return (
        f'"""Scorers of the evaluation suite for MLflow experiment {comment(spec.experiment_id, 100)}.\n\n'
        "Generated by mlflow-eval-agent from state/suite_spec.json; see README.md for why each scorer\n"
        "exists and the traces it was validated on. Code checks are data (CHECKS), evaluated by the\n"
        "reviewed engine in _engine.py. Needs mlflow and google-re2.\n"
        'Scorers return True/False (or "yes"/"no"); a failed verdict is a caught failure.\n'
        '"""\n'
    )


def _code_scorers_list(checks: list[CheckScorer], builtins: list[BuiltinScorer]) -> str:
    entries = [_entry(s, f"_code_scorer({s.name!r})") for s in checks]
    entries += [_entry(s, f"{_builtin_name(s)}({_builtin_kwargs(s)})") for s in builtins]
    body = "".join(entries)
    return f"\n# Code scorers: deterministic, no model needed.\nCODE_SCORERS = [\n{body}]\n"


def _judges_function(judge_specs: list[ScorerSpec]) -> str:
    names = [s.name for s in judge_specs]
    if not judge_specs:
        return f"\nJUDGE_NAMES = {names!r}\n\n\ndef judges(model=None):\n    \"\"\"This suite has no LLM judges.\"\"\"\n    return []\n"
    classes = sorted({_builtin_name(s) for s in judge_specs if isinstance(s, BuiltinScorer)} | ({"Guidelines"} if any(isinstance(s, GuidelinesScorer) for s in judge_specs) else set()))
    lines = [
        f"\n# LLM judges: need a judge model; run_eval.py reports them as skipped when it has no credentials.\nJUDGE_NAMES = {names!r}\n\n",
        "def judges(model=None):\n",
        '    """The LLM judges; `model` like "openai:/gpt-4.1-mini" (None: MLflow\'s default judge model)."""\n',
    ]
    if any(isinstance(s, JudgeScorer) for s in judge_specs):
        lines.append("    from typing import Literal\n\n    from mlflow.genai.judges import make_judge\n")
    if classes:
        lines.append(f"    from mlflow.genai.scorers import {', '.join(classes)}\n")
    lines.append("\n    return [\n")
    for s in judge_specs:
        lines.append("    " + _entry(s, _judge_call(s)).replace("\n    ", "\n        ", 2))
    lines.append("    ]\n")
    return "".join(lines)


def _judge_call(s: ScorerSpec) -> str:
    if isinstance(s, BuiltinScorer):
        return f"{_builtin_name(s)}({_builtin_kwargs(s)}, model=model)"
    if isinstance(s, GuidelinesScorer):
        return f"Guidelines(name={s.name!r}, guidelines={literal(list(s.guidelines))}, model=model)"
    if isinstance(s, JudgeScorer):
        value_type = "bool" if s.value_type == "bool" else 'Literal["yes", "no"]'
        return f"make_judge(name={s.name!r}, instructions={literal(s.instructions)}, feedback_value_type={value_type}, model=model)"
    raise RenderError(f"scorer {s.name} of kind {s.kind} is not a judge")


def _entry(s: ScorerSpec, call: str) -> str:
    evidence = f"must fail {len(s.evidence.must_fail)}, must pass {len(s.evidence.must_pass)}"
    return f"    # {comment(s.why)}\n    # evidence: {evidence}\n    {call},\n"


def _gating_constants(spec: SuiteSpec) -> str:
    thresholds = {s.name: s.threshold for s in spec.scorers if s.threshold is not None}
    return (
        "\n# Minimum pass rate per scorer for the CI gate (run_eval.py --fail-under overrides all).\n"
        f"THRESHOLDS = {literal(thresholds)}\n"
        f"# For scorers without their own threshold; None reports them without gating.\n"
        f"DEFAULT_FAIL_UNDER = {spec.fail_under!r}\n"
    )


# --- run_eval.py, dataset.json ------------------------------------------------------------------
def _template(name: str) -> str:
    return resources.files("mlflow_eval_agent.suite").joinpath(f"templates/{name}").read_text(encoding="utf-8")


def run_eval_source(spec: SuiteSpec, session_id: str) -> str:
    template = _template("run_eval.py")
    start, end = template.index(_CONSTANTS_START), template.index(_CONSTANTS_END)
    dataset = spec.dataset
    constants = (
        f"{_CONSTANTS_START}\n"
        f"SUITE_NAME = {suite_name(session_id)!r}\n"
        f"SESSION_ID = {check_session_id(session_id)!r}\n"
        f"EXPERIMENT_ID = {spec.experiment_id!r}\n"
        f'DATASET_FILE = "dataset.json"\n'
        f"MLFLOW_DATASET_ID = {dataset.mlflow_dataset_id if dataset else None!r}\n"
        "# Which environment variables give a judge provider its credentials (MLflow's own names; any one).\n"
        f"PROVIDER_CREDENTIALS = {literal({p: list(v) for p, v in JUDGE_CREDENTIALS.items() if p != 'databricks'})}\n"
    )
    return template[:start] + constants + template[end:]


def dataset_payload(spec: SuiteSpec) -> dict[str, Any]:
    dataset = spec.dataset
    assert dataset is not None
    return {
        "name": dataset.name,
        "experiment_id": dataset.experiment_id,
        "mlflow_dataset_id": dataset.mlflow_dataset_id,
        "registration": dataset.registration,
        "strata": dataset.strata(),
        "records": [r.model_dump() for r in dataset.records],
    }


# --- README.md ----------------------------------------------------------------------------------
def readme(spec: SuiteSpec, validation: ValidationReport | None) -> str:
    dataset = spec.dataset
    assert dataset is not None
    lines = [
        f"# Evaluation suite for MLflow experiment {spec.experiment_id}",
        "",
        f"Built by mlflow-eval-agent ({'no-model planner' if spec.created_by == 'offline' else 'agent'}) from the experiment's traces.",
        "Every scorer below carries evidence: traces it must fail and traces it must pass, checked by really",
        "running the suite.",
        "",
        "## Run it",
        "",
        "```bash",
        "export MLFLOW_TRACKING_URI=<your tracking URI>   # e.g. sqlite:///mlflow.db or databricks",
        "python run_eval.py                               # the traces this suite was built for",
        "python run_eval.py --experiment-id <id>          # the latest traces of an experiment (CI)",
        "python run_eval.py --judge-model openai:/gpt-4.1-mini   # run the LLM judges with this model",
        "python run_eval.py --predict-fn my_app.agent:predict     # the dataset's inputs through your agent as it is now",
        "pytest evaluation/ --predict-fn my_app.agent:predict     # the same as one pytest test per gated scorer",
        "```",
        "",
        "Needs `mlflow` and `google-re2` (`pip install mlflow google-re2`). Verdicts are logged as assessments on",
        "the evaluated traces (replacing this suite's earlier verdicts there - same scorer name, same kind of source;",
        "human feedback is never touched; `--keep-earlier-verdicts` keeps them),",
        "in an evaluation run named `<suite>-<yyyymmdd-hhmm>` (UTC) and tagged `eval_agent.suite`,",
        "`eval_agent.session_id` and `eval_agent.gate` (PASS/FAIL), with each threshold and the judge model as params,",
        "the registered evaluation dataset as its input, and `run_results.json` and this folder as artifacts.",
        "Code checks are data (`CHECKS` in scorers.py), evaluated by",
        "`_engine.py`, a verbatim copy of mlflow-eval-agent's reviewed check engine; no model-written code runs.",
        "Your own Python scorers (a list named `SCORERS` in a file you write by hand) run only when you name",
        "the file: `python run_eval.py --user-scorers my_scorers.py`. mlflow-eval-agent never passes that flag.",
        "Exit code 0: every gated scorer met its threshold; 1: a threshold was missed or a scorer errored",
        "(judges without credentials are reported as skipped, not as scores; `--require-judges` fails on them);",
        "2: the data could not be loaded. `--fail-under 0.95` sets one threshold for all scorers.",
        "",
        "The dataset deliberately over-samples failures (see the strata below). Suites built by the offline",
        "planner gate each scorer at the pass rate measured on this dataset when the suite was handed over, so",
        "the gate passes today and fails when a scorer regresses. Fresh traces (`--experiment-id`) have other",
        "rates: set `--fail-under` or edit `THRESHOLDS` in scorers.py for that use.",
        "",
        *_agent_section(spec),
        "## Dataset",
        "",
        f"{len(dataset.records)} traces from experiment {dataset.experiment_id} (`dataset.json`, keeping their trace ids). "
        f"Stored as: {dataset.registration or 'file only'}.",
        "",
        "| stratum | traces |",
        "|---|---|",
        *[f"| {name} | {count} |" for name, count in dataset.strata().items()],
        "",
        "## Scorers",
        "",
        "| scorer | kind | needs judge model | threshold | must fail | must pass |",
        "|---|---|---|---|---|---|",
        *[_scorer_row(s) for s in spec.scorers],
        "",
    ]
    for s in spec.scorers:
        lines += _scorer_details(s, validation)
    if spec.dropped:
        lines += ["## Dropped scorers", "", *[f"- **{d.name}** ({d.kind}): {d.reason}" for d in spec.dropped], ""]
    if validation:
        lines += _validation_section(validation)
    return "\n".join(lines) + "\n"


def _agent_section(spec: SuiteSpec) -> list[str]:
    checks = [s for s in spec.scorers if isinstance(s, CheckScorer)]
    needs = {s.name: engine.compile_check(s.rule()).needs for s in checks}
    return [
        "## Test your agent, not only its past",
        "",
        "`python run_eval.py --predict-fn MODULE:FUNCTION` imports your agent from your project (the current folder, or",
        "`--project-dir`) and runs every record's `inputs` (kept in the shape the agent takes) through it with",
        "`mlflow.genai.evaluate(data=..., predict_fn=...)`: fresh traces, judged by the same scorers.",
        "`--endpoint <name>` does the same with a Databricks model-serving endpoint (through `mlflow.genai.to_predict_fn`),",
        "`--endpoint https://host/v1/chat/completions` with an OpenAI-compatible endpoint (`EVAL_ENDPOINT_TOKEN` or",
        "`OPENAI_API_KEY` is sent as the bearer token). Trace your agent with MLflow (autologging or `@mlflow.trace`)",
        "so the span checks see its spans; an endpoint that returns no trace gives a root span only.",
        "",
        "The run is compared with the baseline on the same records (`--baseline FILE|RUN_ID`; default `baseline.json` here",
        "- a baseline run's `run_results.json`, for a CI store that lacks the run - else the run tagged `eval_agent.baseline`):",
        "per scorer, the records newly failing, newly passing and unchanged, printed and written to `run_results.json`",
        "(`regression`). The gate fails (exit 1) when a scorer misses its threshold or has more newly failing records",
        "than `--max-new-failures` (default 0), naming the scorers and records. Where the baseline passed every check",
        "on a record, its recorded output is the reference answer (`expected_response`, logged with source CODE",
        "`eval_agent.recorded_output`, not as a human label) for judges that compare answers.",
        "Exit code 2 is a configuration mistake (a function that cannot be imported, an unreachable store), in one line.",
        "",
        "### What each check needs",
        "",
        "A check judges spans by type and name. When none of the agent's fresh traces has a span a check needs (a tool",
        "renamed, a span type no longer emitted), the check is reported **not applicable** with the reason, never as a pass.",
        "",
        "| check | needs |",
        "|---|---|",
        *[f"| {name} | {'; '.join(n) if n else 'the trace itself (root, outputs, timing)'} |" for name, n in needs.items()],
        "",
        "### In CI",
        "",
        "GitHub Actions (the suite folder committed as `evaluation/`, the store reachable from the runner):",
        "",
        "```yaml",
        "jobs:",
        "  eval:",
        "    runs-on: ubuntu-latest",
        "    env:",
        "      MLFLOW_TRACKING_URI: ${{ secrets.MLFLOW_TRACKING_URI }}",
        "    steps:",
        "      - uses: actions/checkout@v4",
        "      - uses: actions/setup-python@v5",
        "        with: {python-version: '3.11'}",
        "      - run: pip install -e . mlflow google-re2 pytest",
        "      - run: python evaluation/run_eval.py --predict-fn my_app.agent:predict   # or: pytest evaluation/ --predict-fn my_app.agent:predict",
        "```",
        "",
        "A Databricks job task (in a bundle's `resources.jobs.<job>.tasks`; the workspace's store and credentials apply):",
        "",
        "```yaml",
        "- task_key: eval_gate",
        "  spark_python_task:",
        "    python_file: ../evaluation/run_eval.py",
        "    parameters: [\"--predict-fn\", \"my_app.agent:predict\", \"--project-dir\", \"${workspace.file_path}\"]",
        "  environment_key: default   # with dependencies mlflow, google-re2 and your project",
        "```",
        "",
    ]


def _scorer_row(s: ScorerSpec) -> str:
    threshold = "-" if s.threshold is None else f"{s.threshold:.0%}"
    return f"| {s.name} | {_kind_label(s)} | {'yes' if s.needs_judge else 'no'} | {threshold} | {len(s.evidence.must_fail)} | {len(s.evidence.must_pass)} |"


def _kind_label(s: ScorerSpec) -> str:
    if isinstance(s, CheckScorer):
        return f"check `{s.check}`" if s.check else "check document"
    if isinstance(s, BuiltinScorer):
        return f"built-in `{s.builtin}`"
    return {"guidelines": "Guidelines judge", "make_judge": "make_judge judge"}.get(s.kind, s.kind)


def _scorer_details(s: ScorerSpec, validation: ValidationReport | None) -> list[str]:
    lines = [f"### {s.name}", "", " ".join(s.why.split()), ""]
    if isinstance(s, CheckScorer) and s.params:
        lines += [f"Parameters: `{json.dumps(s.params)}`", ""]
    if isinstance(s, CheckScorer) and s.fail_when is not None:
        lines += ["Fails when:", "", "```json", json.dumps(s.fail_when, indent=1), "```", ""]
    if s.evidence.source:
        lines.append(f"Evidence from {s.evidence.source}.")
    lines.append(f"Must fail: {_ids(s.evidence.must_fail)}. Must pass: {_ids(s.evidence.must_pass)}.")
    result = validation.latest.scorers.get(s.name) if validation else None
    if result:
        lines.append(f"Validation: {result.summary}")
    return [*lines, ""]


def _ids(ids: list[str], limit: int = 6) -> str:
    if not ids:
        return "none"
    shown = ", ".join(f"`{t}`" for t in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _validation_section(validation: ValidationReport) -> list[str]:
    latest, baseline = validation.latest, validation.baseline
    return [
        "## Validation",
        "",
        f"Last validated {latest.validated_at} in {latest.seconds:.0f} s (evaluation run {latest.run_name or ''} {latest.run_id or 'none'}, "
        f"gate {latest.gate or '-'}): {latest.summary}.",
        f"Baseline: evaluation run {baseline.run_id if baseline else 'none'} ("
        + (f"{baseline.validated_at}, gate {baseline.gate or '-'}{', thresholds calibrated from it' if baseline.calibrated else ''}" if baseline
           else "no run has passed its gate yet") + ").",
        "Re-run the validation later with `mlflow-eval-agent validate --session-id <session>` to compare with the baseline.",
        "",
    ]
