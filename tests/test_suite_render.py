"""Rendering every scorer kind into evaluation/, running it with and without a judge model, and the
validation record: evidence agreement, human-label agreement, the baseline."""

from __future__ import annotations

import inspect
import json
import os
import re
import sqlite3
import subprocess
import sys

import mlflow
import pytest
from mlflow.entities import AssessmentSource

from mlflow_eval_agent import redaction
from mlflow_eval_agent.demo.chat_server import ChatReply, FakeChatServer
from mlflow_eval_agent.store import open_session_store
from mlflow_eval_agent.suite.checks import engine
from mlflow_eval_agent.suite.dataset import build_dataset
from mlflow_eval_agent.suite.render import render_suite, scorers_source
from mlflow_eval_agent.suite.spec import SuiteSpec, parse_scorer
from mlflow_eval_agent.suite.validate import compare, validate_suite
from tests.suite_helpers import local_store, seed_experiment

ANSWERED = {"op": "trace", "where": [{"field": "outputs", "path": "content", "test": "empty"}]}


def judge_model(request):
    """A fake judge: an empty answer is not helpful; everything else is."""
    prompt = " ".join(str(m.get("content")) for m in request.get("messages", []))
    verdict = "no" if '"content": ""' in prompt else "yes"
    return ChatReply(content=json.dumps({"result": verdict, "rationale": f"judged {verdict}"}))


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("render")
    with local_store(folder) as uri:
        experiment_id, seeded = seed_experiment("render", n=12)
        ids = {mode: [s.trace_id for s in seeded if mode in s.modes][:1] for mode in ("caught_tool_error", "empty_answer", "uncaught_tool_error")}
        clean = [s.trace_id for s in seeded if not s.modes][:3]
        chosen = [*ids["caught_tool_error"], *ids["empty_answer"], *ids["uncaught_tool_error"], *clean]
        dataset, _ = build_dataset("render-test", experiment_id, [(t, "all") for t in chosen])
        source = AssessmentSource(source_type="HUMAN", source_id="reviewer")
        mlflow.log_feedback(trace_id=ids["caught_tool_error"][0], name="no_hidden_failures", value=False, source=source)
        mlflow.log_feedback(trace_id=clean[0], name="no_hidden_failures", value=False, source=source)

        def scorer(**data):
            data.setdefault("why", "a reason from the profile")
            return parse_scorer(data)

        spec = SuiteSpec(experiment_id=experiment_id, dataset=dataset, scorers=[
            scorer(kind="check", name="no_hidden_failures", check="no_hidden_failures", threshold=0.5,
                   evidence={"must_fail": ids["caught_tool_error"], "must_pass": clean}),
            scorer(kind="check", name="answered", fail_when=ANSWERED, evidence={"must_fail": ids["empty_answer"], "must_pass": clean}),
            scorer(kind="check", name="says_thanks", check="output_regex", params={"pattern": "Thanks"},
                   evidence={"must_fail": ids["empty_answer"], "must_pass": clean}),
            scorer(kind="guidelines", name="polite", guidelines=["The answer is polite."], evidence={"must_pass": clean}),
            scorer(kind="make_judge", name="helpful", instructions="Does {{ outputs }} help the customer?", value_type="yes_no",
                   evidence={"must_fail": ids["empty_answer"], "must_pass": clean}),
            scorer(kind="builtin", name="safety", builtin="Safety", evidence={"must_pass": clean}),
        ])
        store = open_session_store(str(folder / "sessions"), "render-test")
        render_suite(spec, store)
        yield {"uri": uri, "spec": spec, "store": store, "ids": ids, "clean": clean}


def test_scorers_py_is_self_contained_and_lists_every_kind(suite):
    source = scorers_source(suite["spec"])
    assert not re.search(r"^\s*(from|import)\s+mlflow_eval_agent", source, re.M)
    assert "_code_scorer('no_hidden_failures')" in source and "_code_scorer('answered')" in source
    assert "'fail_when': {'op': 'trace'" in source and "'value': 'Thanks'" in source
    assert "make_judge(name='helpful'" in source and 'feedback_value_type=Literal["yes", "no"]' in source
    folder = suite["store"].path("evaluation")
    assert (folder / "_engine.py").read_text() == inspect.getsource(engine)
    assert (folder / "_redaction.py").read_text() == inspect.getsource(redaction)
    probe = ("import sys; sys.modules['mlflow_eval_agent'] = None; sys.path.insert(0, sys.argv[1]); import scorers; "
             "print([s.name for s in scorers.CODE_SCORERS], scorers.JUDGE_NAMES, [j.name for j in scorers.judges('openai:/gpt-4o-mini')], scorers.THRESHOLDS)")
    out = subprocess.run([sys.executable, "-c", probe, str(folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1500:]
    assert "['no_hidden_failures', 'answered', 'says_thanks'] ['polite', 'helpful', 'safety'] ['polite', 'helpful', 'safety'] {'no_hidden_failures': 0.5}" in out.stdout


def test_validation_without_judge_credentials_skips_judges_then_measures_them(suite):
    spec, store, uri = suite["spec"], suite["store"], suite["uri"]
    first = validate_suite(spec, store, uri, timeout_s=300)
    run = first.latest
    assert run.ok and run.exit_code == 0, run.error
    for name in ("no_hidden_failures", "answered", "says_thanks"):
        assert run.scorers[name].meets_evidence is True, run.scorers[name].summary
        assert run.scorers[name].evidence.recall == 1.0 and run.scorers[name].evidence.false_alarm_rate == 0.0
    for name in ("polite", "helpful", "safety"):
        assert run.scorers[name].status == "SKIPPED" and run.scorers[name].meets_evidence is None
        assert "needs OPENAI_API_KEY" in run.scorers[name].summary
    human = run.scorers["no_hidden_failures"]
    assert (human.human_labels, human.human_agreement) == (2, 0.5)
    assert first.baseline == run
    assert "1 trace(s) not applicable" not in run.scorers["polite"].reason  # skipped judges are not run at all

    with FakeChatServer(judge_model) as server:
        env = {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": server.base_url}
        second = validate_suite(spec, store, uri, timeout_s=300, judge_model="openai:/gpt-4o-mini", extra_env=env)
    run2 = second.latest
    assert second.baseline == run, "the first successful run stays the baseline"
    for name in ("polite", "helpful", "safety"):
        assert run2.scorers[name].status == "REPORT" and run2.scorers[name].meets_evidence is True, run2.scorers[name].summary
        assert run2.scorers[name].errors == 0
    assert run2.scorers["helpful"].evidence.caught == suite["ids"]["empty_answer"]
    changes = {d.name: d.change for d in compare(second.baseline, run2)}
    assert changes["helpful"].startswith("status SKIPPED -> REPORT") and changes["no_hidden_failures"] == "unchanged"
    readme = store.read_text("evaluation/README.md")
    assert "### helpful" in readme and "Must fail:" in readme


def test_secrets_do_not_reach_the_suite(suite, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    from mlflow_eval_agent.child import child_env

    env = child_env(suite["uri"])
    assert "ANTHROPIC_API_KEY" not in env and "OPENAI_API_KEY" not in env and env["MLFLOW_TRACKING_URI"] == suite["uri"]


def test_a_broken_suite_is_reported_not_crashed_on(suite, tmp_path):
    store = open_session_store(str(tmp_path), "broken")
    render_suite(suite["spec"], store)
    store.write_text("evaluation/scorers.py", "raise RuntimeError('broken on purpose')\n")
    report = validate_suite(suite["spec"], store, suite["uri"], timeout_s=120)
    assert not report.latest.ok and "broken on purpose" in report.latest.error
    assert report.baseline is None


def test_hand_written_scorers_run_only_when_named_never_in_the_products_own_validation(suite, tmp_path):
    store = open_session_store(str(tmp_path), "mine")
    render_suite(suite["spec"], store)
    marker = tmp_path / "user-scorer-ran"
    store.write_text("evaluation/user_scorers.py", (
        "from pathlib import Path\nfrom mlflow.genai.scorers import scorer\n\n\n"
        f"@scorer(name='mine')\ndef mine(outputs=None):\n    Path({str(marker)!r}).write_text('ran')\n    return True\n\n\nSCORERS = [mine]\n"
    ))
    report = validate_suite(suite["spec"], store, suite["uri"], timeout_s=300)
    assert report.latest.ok and "mine" not in report.latest.scorers and not marker.exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))} | {"MLFLOW_TRACKING_URI": suite["uri"]}
    out = tmp_path / "results.json"
    implicit = subprocess.run([sys.executable, "run_eval.py", "--skip-judges"], cwd=store.path("evaluation"),
                              env=env, capture_output=True, text=True, timeout=300)
    assert implicit.returncode == 0 and not marker.exists(), "a file in the suite folder must not run because it exists"
    proc = subprocess.run([sys.executable, "run_eval.py", "--skip-judges", "--output-json", str(out), "--user-scorers", "user_scorers.py"],
                          cwd=store.path("evaluation"), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert marker.exists() and "mine" in json.loads(out.read_text())["per_trace"]


def _run_record(uri: str, run_id: str) -> dict:
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    return {
        "name": run.info.run_name, "tags": run.data.tags, "params": run.data.params,
        "inputs": [(d.dataset.name, d.dataset.source_type) for d in run.inputs.dataset_inputs],
        "artifacts": {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "suite")},
    }


def test_every_suite_run_is_a_named_tagged_evaluation_run_and_the_baseline_passed_its_gate(suite, tmp_path):
    from mlflow_eval_agent.suite.dataset import register_dataset
    from tests.suite_helpers import traces_of

    spec, uri = suite["spec"], suite["uri"]
    dataset = register_dataset(spec.dataset, traces_of(spec.experiment_id, spec.dataset.trace_ids()), uri)
    assert dataset.mlflow_dataset_id, dataset.registration
    strict = spec.with_dataset(dataset).model_copy(update={"scorers": [
        s.model_copy(update={"threshold": 0.99}) if s.name == "no_hidden_failures" else s for s in spec.scorers]})
    store = open_session_store(str(tmp_path), "runs-test")
    render_suite(strict, store)
    failing = validate_suite(strict, store, uri, timeout_s=300)
    assert failing.latest.ok and failing.latest.gate == "FAIL" and failing.baseline is None, "a run that failed its gate is no baseline"
    first = _run_record(uri, failing.latest.run_id)
    assert re.fullmatch(r"eval-agent-runs-test-\d{8}-\d{4}", first["name"]) and first["name"] == failing.latest.run_name
    assert {k: first["tags"].get(k) for k in ("eval_agent.session_id", "eval_agent.suite", "eval_agent.gate", "mlflow.runType")} == {
        "eval_agent.session_id": "runs-test", "eval_agent.suite": "eval-agent-runs-test", "eval_agent.gate": "FAIL", "mlflow.runType": "genai_evaluate"}
    assert "eval_agent.baseline" not in first["tags"]
    assert first["params"]["threshold.no_hidden_failures"] == "0.99" and first["params"]["threshold.polite"] == "none"
    assert first["params"]["judge_model"] == "openai:/gpt-4.1-mini (skipped)"
    assert ("render-test", "mlflow_evaluation_dataset") in first["inputs"]
    assert {"run_results.json", "suite/run_eval.py", "suite/scorers.py", "suite/dataset.json", "suite/_engine.py"} <= first["artifacts"]

    lenient = strict.model_copy(update={"scorers": [
        s.model_copy(update={"threshold": 0.5}) if s.name == "no_hidden_failures" else s for s in strict.scorers]})
    render_suite(lenient, store)
    passing = validate_suite(lenient, store, uri, timeout_s=300)
    assert passing.latest.gate == "PASS" and passing.baseline == passing.latest and passing.latest.notes == []
    second = _run_record(uri, passing.latest.run_id)
    assert second["tags"]["eval_agent.gate"] == "PASS" and second["tags"]["eval_agent.baseline"] == "true"
    assert second["params"]["threshold.no_hidden_failures"] == "0.5"
    again = validate_suite(lenient, store, uri, timeout_s=300)
    assert again.baseline == passing.latest, "the first run that passed its gate stays the baseline"
    assert "eval_agent.baseline" not in _run_record(uri, again.latest.run_id)["tags"]


def test_judges_are_configured_once_and_get_only_their_providers_variables(suite, tmp_path, monkeypatch, capsys):
    from mlflow_eval_agent.cli import main
    from mlflow_eval_agent.settings import resolve_settings

    spec, uri = suite["spec"], suite["uri"]
    store = open_session_store(str(tmp_path), "judges")
    store.write_model("state/suite_spec.json", spec)
    render_suite(spec, store)
    # Nothing configured: the judges are skipped, saying how to configure them (not "needs OPENAI_API_KEY").
    none = resolve_settings({}, env={}).judge
    report = validate_suite(spec, store, uri, timeout_s=300, judge_model=none.model, extra_env=none.child_env(), skip_judges=none.skip_reason)
    reasons = {report.latest.scorers[n].reason for n in ("polite", "helpful", "safety")}
    assert reasons == {f"skipped: {none.skip_reason}"} and "pass --judge-model" in none.skip_reason and "OPENAI" not in none.skip_reason

    with FakeChatServer(judge_model) as server:
        env = {"MLFLOW_GENAI_JUDGE_DEFAULT_MODEL": "openai:/gpt-4o-mini", "OPENAI_API_KEY": "sk-test-judge-key", "OPENAI_BASE_URL": server.base_url,
               "ANTHROPIC_API_KEY": "sk-ant-not-for-the-judges", "DATABRICKS_TOKEN": "dapi-not-for-the-judges"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        judge = resolve_settings({}, env=env).judge
        assert (judge.model, judge.source, sorted(judge.child_env())) == ("openai:/gpt-4o-mini", "MLFLOW_GENAI_JUDGE_DEFAULT_MODEL", ["OPENAI_API_KEY", "OPENAI_BASE_URL"])
        code = main(["validate", "--session-id", "judges", "--volume-path", str(tmp_path), "--tracking-uri", uri])
    captured = capsys.readouterr()
    out = captured.out
    assert "Judges: openai:/gpt-4o-mini (MLFLOW_GENAI_JUDGE_DEFAULT_MODEL)" in out, (code, out, captured.err[-3000:])
    assert "needs OPENAI_API_KEY" not in out and "sk-test-judge-key" not in out
    latest = json.loads(store.read_text("state/validation.json"))["latest"]
    assert {latest["scorers"][n]["status"] for n in ("polite", "helpful", "safety")} == {"REPORT"}, latest["scorers"]
    assert latest["judge_model"] == "openai:/gpt-4o-mini"
    params = mlflow.MlflowClient(tracking_uri=uri).get_run(latest["run_id"]).data.params
    assert params["judge_model"] == "openai:/gpt-4o-mini" and not any("sk-" in v for v in params.values())
    assert code in (0, 1)


def test_the_default_judge_is_the_agents_own_provider():
    from mlflow_eval_agent.settings import resolve_settings

    both = resolve_settings({}, env={"ANTHROPIC_API_KEY": "sk-ant-abcdefgh", "OPENAI_API_KEY": "sk-openai-abcdefgh"}).judge
    assert (both.model, sorted(both.child_env())) == ("anthropic:/claude-sonnet-4-5", ["ANTHROPIC_API_KEY"])
    assert resolve_settings({"model": "claude-opus-4-1"}, env={"ANTHROPIC_API_KEY": "sk-ant-abcdefgh"}).judge.model == "anthropic:/claude-opus-4-1"
    flag = resolve_settings({"judge_model": "anthropic:/claude-haiku-4-5"}, env={"MLFLOW_GENAI_JUDGE_DEFAULT_MODEL": "openai:/gpt-4o"}).judge
    assert flag.model == "anthropic:/claude-haiku-4-5" and flag.skip_reason == "judge model 'anthropic:/claude-haiku-4-5' (--judge-model) needs ANTHROPIC_API_KEY, which is not set"
    workspace = resolve_settings({"model": "databricks-claude-sonnet-4-5"}, env={"DATABRICKS_RUNTIME_VERSION": "16.4", "ANTHROPIC_API_KEY": "sk-ant-abcdefgh"}).judge
    assert workspace.model == "databricks:/databricks-claude-sonnet-4-5" and "ANTHROPIC_API_KEY" not in workspace.child_env()
    gateway = resolve_settings({}, env={"ANTHROPIC_BASE_URL": "https://adb-1.cloud.databricks.com/serving-endpoints/anthropic", "ANTHROPIC_AUTH_TOKEN": "dapi0123456789"}).judge
    assert gateway.model == "databricks:/databricks-claude-sonnet-4-5"
    assert gateway.child_env() == {"DATABRICKS_HOST": "https://adb-1.cloud.databricks.com", "DATABRICKS_TOKEN": "dapi0123456789"}
    openai_only = resolve_settings({}, env={"OPENAI_API_KEY": "sk-openai-abcdefgh"}).judge
    assert openai_only.model == "openai:/gpt-4.1-mini" and openai_only.skip_reason is None  # MLflow's default, and its key goes with it


def test_the_suite_has_a_pytest_entry_and_says_what_each_check_needs(suite):
    folder = suite["store"].path("evaluation")
    assert (folder / "test_suite.py").is_file() and (folder / "conftest.py").is_file()
    readme = suite["store"].read_text("evaluation/README.md")
    assert "### What each check needs" in readme and "--predict-fn" in readme
    assert "| no_hidden_failures |" in readme and "### In CI" in readme and "spark_python_task" in readme and "runs-on: ubuntu-latest" in readme
    # One test per gated scorer (the others report without gating).
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(folder)],
                         capture_output=True, text=True, timeout=120, cwd=folder)
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    collected = re.findall(r"test_scorer\[([^\]]+)\]", out.stdout)
    assert collected and "no_hidden_failures" in collected


def test_a_run_replaces_its_own_earlier_verdicts_and_keeps_human_feedback(suite, tmp_path):
    store = open_session_store(str(tmp_path), "verdicts")
    render_suite(suite["spec"], store)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))} | {"MLFLOW_TRACKING_URI": suite["uri"]}

    def run(*extra):
        proc = subprocess.run([sys.executable, "run_eval.py", "--skip-judges", *extra], cwd=store.path("evaluation"),
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
        assert "one by one" not in proc.stderr and "were not replaced" not in proc.stderr, proc.stderr[-2000:]  # one transaction

    def verdicts():
        counts = {}
        for trace_id in suite["spec"].dataset.trace_ids():
            for a in mlflow.get_trace(trace_id).info.assessments:
                if a.feedback is not None:
                    key = (trace_id, a.name, str(getattr(a.source.source_type, "value", a.source.source_type)))
                    counts[key] = counts.get(key, 0) + 1
        return counts

    run()
    run()
    counts = verdicts()
    ours = {"no_hidden_failures", "answered", "says_thanks"}  # (earlier tests' hand-written 'mine' verdicts are not this suite's)
    code = {k: n for k, n in counts.items() if k[2] == "CODE" and k[1] in ours}
    assert code and set(code.values()) == {1}, "one verdict per scorer per trace, whatever the number of runs"
    assert {k[1] for k in code} == ours
    human = [k for k in counts if k[2] == "HUMAN"]
    assert len(human) == 2 and all(k[1] == "no_hidden_failures" for k in human), "human feedback of the same name is kept"
    run("--keep-earlier-verdicts")
    assert set(n for k, n in verdicts().items() if k[2] == "CODE" and k[1] in ours) == {2}
    database = suite["uri"][len("sqlite:///"):]
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal", "run_eval.py puts a local sqlite store in WAL mode"


def test_sqlite_full_sync_leaves_the_journal_mode_alone(suite, tmp_path):
    database = tmp_path / "copy.db"
    with sqlite3.connect(suite["uri"][len("sqlite:///"):]) as source, sqlite3.connect(database) as db:
        source.backup(db)  # the source may be in WAL mode: a file copy could miss its last commits
        db.execute("PRAGMA journal_mode=DELETE")
    store = open_session_store(str(tmp_path), "full-sync")
    render_suite(suite["spec"], store)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))} | {"MLFLOW_TRACKING_URI": f"sqlite:///{database}"}
    proc = subprocess.run([sys.executable, "run_eval.py", "--skip-judges", "--sqlite-full-sync"], cwd=store.path("evaluation"),
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
