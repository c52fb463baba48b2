"""Attacks on the suite tools, as a model that read hostile trace content would make them.

Every text field of add_scorer/try_scorer gets code (dunder tricks, re-exported modules,
`__builtins__`, `/proc`, sockets, writes outside the session); the tools answer with precise
rejections or keep the text as data. The rendered suite is then proven to contain no model text
outside string literals and comments, and is run as a CI job would run it — with canary secrets in
its environment and an audit hook recording every file write, socket connection and process — and
the canaries must appear nowhere."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import SpanType

from mlflow_eval_agent.settings import resolve_settings
from mlflow_eval_agent.store import open_session_store
from mlflow_eval_agent.tools import suite as suite_tools
from mlflow_eval_agent.tools._base import ToolContext, run_tool
from tests.suite_helpers import local_store, seed_experiment

TOOLS = {t.name: t for t in suite_tools.TOOLS}
CANARY = "canary-5f1d0c7e9a2b"
DATABRICKS_CANARY = "dapi" + "0123456789abcdef" * 2

# What the measured exploit did, as one payload: reach os and __import__ without importing them,
# read the parent's environment and the user's .env, write outside, open a socket.
EXPLOIT = textwrap.dedent("""
    import dataclasses
    os = dataclasses.inspect.os
    imp = __builtins__["__import__"] if isinstance(__builtins__, dict) else __builtins__.__import__
    stolen = open(f"/proc/{os.getppid()}/environ").read() + open(f"/proc/{os.getppid()}/cwd/.env").read()
    open("MARKER", "w").write(stolen)
    imp("socket").create_connection(("127.0.0.1", 9))
    def scorer(trace):
        return True
""")


def payloads(marker: Path) -> list[str]:
    """Strings that would do harm if any of them reached Python as code."""
    touch = f"open({str(marker)!r}, 'w').write('pwned')"
    return [
        EXPLOIT.replace("MARKER", str(marker)),
        f"__import__('os').system('touch {marker}')",
        f"'); {touch}; ('",
        f'"""); {touch}; ("""',
        f"x\n{touch}\n#",
        f"x\u2028{touch}\u2029",
        f"{{{{ trace }}}} ]]; {touch} #",
        f"__builtins__['exec']({touch!r})",
        "().__class__.__base__.__subclasses__()",
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attacks")
    with local_store(folder) as uri:
        experiment_id, seeded = seed_experiment("attacks", n=12)
        mlflow.set_experiment(experiment_id=experiment_id)
        with mlflow.start_span("agent", span_type=SpanType.AGENT) as root:  # an app that logged its own secret
            root.set_inputs({"question": "why is the connection failing?"})
            with mlflow.start_span("call_backend", span_type=SpanType.TOOL) as tool:
                tool.set_outputs({"error": f"401 for token {DATABRICKS_CANARY} and {CANARY}"})
            root.set_outputs("I could not reach the backend.")
        leaky = mlflow.get_last_active_trace_id()
        settings = resolve_settings({"experiment_id": experiment_id, "tracking_uri": uri, "volume_path": str(folder / "v")}, env={})
        ctx = ToolContext(settings=settings, store=open_session_store(settings.volume_path, "attacks"))
        by_mode = {m: [s.trace_id for s in seeded if m in s.modes] for s in seeded for m in s.modes}
        clean = [s.trace_id for s in seeded if not s.modes]
        marker = folder / "pwned"
        yield {"ctx": ctx, "uri": uri, "by_mode": by_mode, "clean": clean, "leaky": leaky, "marker": marker, "folder": folder,
               "experiment_id": experiment_id}


def call(world, tool, **arguments):
    return run_tool(TOOLS[tool], world["ctx"], arguments)


def test_code_is_refused_through_every_scorer_tool(world):
    for tool in ("add_scorer", "try_scorer"):
        extra = {"trace_ids": world["clean"][:2]} if tool == "try_scorer" else {}
        for arguments in (
            {"kind": "custom", "name": "scorer", "why": "the profile says so", "code": EXPLOIT},
            {"kind": "check", "name": "scorer", "why": "the profile says so", "code": EXPLOIT},
            {"kind": "check", "name": "scorer", "why": "the profile says so", "fail_when": {"op": "python", "code": EXPLOIT}},
            {"kind": "check", "name": "scorer", "why": "the profile says so", "check": "no_error_spans", "exec": EXPLOIT},
        ):
            text, is_error = call(world, tool, **arguments, **extra)
            assert is_error, text
            assert any(s in text for s in ("Scorers cannot be code", "unknown condition 'python'", "Extra inputs are not permitted")), text
    assert not world["marker"].exists()


def test_hostile_text_in_every_field_stays_data(world):
    by_mode, clean, marker = world["by_mode"], world["clean"], world["marker"]
    hostile = payloads(marker)
    dataset = {"caught": by_mode["caught_tool_error"], "empty": by_mode["empty_answer"], "normal": clean, "leak": [world["leaky"]]}
    text, is_error = call(world, "set_dataset", strata=dataset, size=40)
    assert not is_error, text
    empty_answer = {"op": "trace", "where": [{"field": "outputs", "path": "content", "test": "empty"}]}
    for i, payload in enumerate(hostile):
        # Free text (reasons, evidence sources, judge instructions and guidelines) is accepted as data ...
        for kind, fields in (
            ("check", {"fail_when": empty_answer, "must_fail": by_mode["empty_answer"], "must_pass": clean[:2]}),
            ("guidelines", {"guidelines": [payload[:1000]], "must_pass": clean[:2]}),
            ("make_judge", {"instructions": f"Is {{{{ outputs }}}} safe? {payload}"[:8000], "must_pass": clean[:2]}),
        ):
            text, is_error = call(world, "add_scorer", kind=kind, name=f"{kind}_{i}", why=f"hostile reason {payload}"[:1000],
                                  evidence_source=payload[:500], **fields)
            assert not is_error, text
        # ... and inside a check document only as values: a name (no such span), a key, a path, a value.
        text, is_error = call(world, "try_scorer", kind="check", name="probe", why="trying a hostile document",
                              fail_when={"op": "exists", "spans": {"name": payload[:300]}}, trace_ids=clean[:2])
        assert is_error and "no span in the dataset's traces is named" in text, text
        for document in (
            {"op": "exists", "spans": {}, "satisfy": [{"field": "attributes", "key": payload[:300], "test": "exists"}]},
            {"op": "exists", "spans": {}, "satisfy": [{"field": "outputs", "path": payload[:200], "test": "equals", "value": payload[:2000]}]},
        ):
            text, is_error = call(world, "try_scorer", kind="check", name="probe", why="trying a hostile document", fail_when=document,
                                  trace_ids=clean[:2])
            assert not is_error and "results" in text, text
    # Names and built-in parameters are where text would become code: they are refused.
    for name in ("x'); import os; ('", "__import__", "a" * 65):
        text, is_error = call(world, "add_scorer", kind="check", name=name, why="a hostile name here", check="no_error_spans",
                              must_fail=by_mode["caught_tool_error"])
        assert is_error and "name" in text, text
    text, is_error = call(world, "add_scorer", kind="builtin", name="pii", why="a hostile parameter", builtin="PIIDetection",
                          params={"x=__import__('os').system('id'),y": 1}, must_pass=clean[:1])
    assert is_error and "has no parameter" in text, text
    text, is_error = call(world, "add_scorer", kind="builtin", name="pii", why="a hostile built-in", builtin="os.system('id')#", must_pass=clean[:1])
    assert is_error and "unknown built-in" in text, text

    text, is_error = call(world, "render_suite")
    assert not is_error, text
    source = world["ctx"].store.read_text("evaluation/scorers.py")
    assert_only_template_code(source)
    assert not marker.exists()


def assert_only_template_code(source: str) -> None:
    """Every identifier, attribute and import in scorers.py is one the renderer itself writes."""
    allowed = {
        "annotations", "os", "Feedback", "scorer", "compile_check", "credential_values", "scrub", "ImportError", "CHECKS",
        "_code_scorer", "name", "check", "secrets", "environ", "score", "outputs", "trace", "passed", "rationale", "bool", "value",
        "CODE_SCORERS", "JUDGE_NAMES", "judges", "model", "Literal", "make_judge", "instructions", "feedback_value_type",
        "Guidelines", "guidelines", "THRESHOLDS", "DEFAULT_FAIL_UNDER", "typing", "mlflow", "entities", "genai", "scorers",
        "_engine", "_redaction", "__future__", "verdict", "spans", "where", "span_id", "str", "metadata",
    }
    tree = ast.parse(source)
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.arg, ast.keyword)):
            used.add(getattr(node, "name", None) or getattr(node, "arg", None))
        elif isinstance(node, ast.alias):
            used.update(node.name.split("."))
        elif isinstance(node, (ast.ImportFrom,)) and node.module:
            used.update(node.module.split("."))
    used.discard(None)
    assert used <= allowed, f"unexpected names in scorers.py: {sorted(used - allowed)}"
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert calls <= {"compile_check", "credential_values", "scorer", "check.verdict", "Feedback", "bool", "str", "scrub", "_code_scorer", "make_judge",
                     "Guidelines"}, calls


AUDIT = '''
import os, sys
_log = open(os.environ["AUDIT_LOG"], "a", buffering=1)
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _WRITE)
        if writing and isinstance(path, (str, bytes)):
            _log.write("write " + os.fsdecode(path) + "\\n")
    elif event == "socket.connect":
        _log.write("connect " + repr(args[1]) + "\\n")
    elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork"):
        _log.write("process " + repr(args)[:200] + "\\n")

sys.addaudithook(_hook)
'''


def test_the_suite_in_ci_leaks_nothing_and_touches_nothing_else(world, tmp_path):
    by_mode, clean = world["by_mode"], world["clean"]
    spec = json.loads(world["ctx"].store.read_text("state/suite_spec.json") or "{}")
    for scorer in spec.get("scorers", []):
        call(world, "remove_scorer", name=scorer["name"], reason="starting over for this test")
    text, is_error = call(world, "set_dataset", strata={"caught": by_mode["caught_tool_error"], "normal": clean, "leak": [world["leaky"]]}, size=40)
    assert not is_error, text
    shows_output = {"op": "exists", "spans": {"type": ["TOOL"]}, "satisfy": [{"field": "outputs", "path": "error", "test": "regex", "value": "401"}]}
    text, is_error = call(world, "add_scorer", kind="check", name="backend_auth", why="the backend rejects the app's token",
                          fail_when=shows_output, must_fail=[world["leaky"]], must_pass=clean[:2])
    assert not is_error, text
    text, is_error = call(world, "add_scorer", kind="check", name="tools_ok", why="tool calls fail", check="no_error_spans",
                          params={"span_types": ["TOOL"]}, must_fail=by_mode["caught_tool_error"], must_pass=clean[:2])
    assert not is_error, text
    assert not call(world, "render_suite")[1]

    evaluation = world["ctx"].store.path("evaluation")
    audit_dir = tmp_path / "audit"
    audit_dir.mkdir()
    (audit_dir / "sitecustomize.py").write_text(AUDIT)
    log, home, results = tmp_path / "audit.log", tmp_path / "home", tmp_path / "results.json"
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(home), "MLFLOW_TRACKING_URI": world["uri"],
        "PYTHONPATH": str(audit_dir), "AUDIT_LOG": str(log), "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
        "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false", "PYTHONDONTWRITEBYTECODE": "1",
        # a CI job's secrets
        "DATABRICKS_TOKEN": DATABRICKS_CANARY, "MY_SERVICE_PASSWORD": CANARY, "ANTHROPIC_API_KEY": "sk-ant-" + CANARY,
    }
    proc = subprocess.run([sys.executable, "run_eval.py", "--output-json", str(results)], cwd=evaluation, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
    report = results.read_text()
    assert json.loads(report)["per_trace"]["backend_auth"][world["leaky"]] == "fail"

    # The verdict's rationale shows the span output, scrubbed; the trace itself is the user's data, left as it was.
    assessments = [a for a in mlflow.get_trace(world["leaky"]).info.assessments if a.name == "backend_auth"]
    assert assessments and all("[REDACTED]" in (a.rationale or "") for a in assessments), [a.rationale for a in assessments]
    tool_span = next(sp for sp in mlflow.get_trace(world["leaky"]).data.spans if sp.name == "call_backend")
    assert {(a.metadata or {}).get("eval_agent.span_id") for a in assessments} == {tool_span.span_id}  # the verdict points at the span
    for text in (report, proc.stdout, proc.stderr, *(a.rationale or "" for a in assessments)):
        assert CANARY not in text and DATABRICKS_CANARY not in text

    events = log.read_text().splitlines()
    # MLflow itself asks `uname -p` (platform.processor) and `git version` (run source tags); nothing else starts.
    processes = [e for e in events if e.startswith("process") and not e.startswith(("process ('uname', ['uname', '-p']", "process ('git', ['git', "))]
    assert not processes and not [e for e in events if e.startswith("connect")], events
    # The store (and its journal), the run's artifacts (run_results.json, the suite files), HOME, the results file.
    artifacts = Path(mlflow.get_experiment(world["experiment_id"]).artifact_location.removeprefix("file://"))
    allowed = (world["uri"].removeprefix("sqlite:///"), str(artifacts) + "/", str(home) + "/", str(results), "/dev/null")
    outside = [e for e in events if e.startswith("write ") and not e[6:].startswith(allowed)]
    assert not outside, outside
    logged = list(artifacts.rglob("run_results.json"))
    assert logged, "the run logged its results as an artifact"
    for path in [*home.rglob("*"), *evaluation.rglob("*"), *artifacts.rglob("*")]:
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
