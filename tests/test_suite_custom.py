"""Custom scorer code is accepted only after it compiles, imports nothing forbidden, and runs on
sample traces in a child process within its time limits; each rejection says why."""

from __future__ import annotations

import pytest

from mlflow_eval_agent.suite.custom import CustomCodeError, analyse, run_custom
from tests.suite_helpers import local_store, seed_experiment, traces_of

GOOD = '''
import json

def _tool_spans(trace):
    return [s for s in trace.data.spans if s.span_type == "TOOL"]

def tools_ok(trace):
    """Every tool span succeeded."""
    return all(s.status.status_code != "ERROR" for s in _tool_spans(trace))
'''


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    with local_store(tmp_path_factory.mktemp("custom")):
        experiment_id, seeded = seed_experiment("custom", n=12)
        broken = [s.trace_id for s in seeded if s.modes & {"caught_tool_error", "uncaught_tool_error"}]
        clean = [s.trace_id for s in seeded if not s.modes][:2]
        yield traces_of(experiment_id, [*broken, *clean]), set(broken)


def test_working_code_is_run_on_the_traces(traces):
    sample, broken = traces
    result = run_custom(GOOD, sample)
    assert result.verdicts == {t.info.trace_id: t.info.trace_id not in broken for t in sample}


def test_feedback_and_yes_no_values_are_accepted(traces):
    code = "from mlflow.entities import Feedback\n\ndef answered(outputs):\n    return Feedback(value='yes' if outputs else 'no', rationale='checked')\n"
    result = run_custom(code, traces[0][:2])
    assert set(result.rationales.values()) == {"checked"}


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("def f(outputs)\n    return True\n", "does not compile: line 1"),
        ("import os\ndef f(outputs):\n    return True\n", "line 1: importing 'os' is not allowed"),
        ("import subprocess as s\ndef f(trace):\n    return True\n", "importing 'subprocess' is not allowed"),
        ("def f(outputs):\n    return open('/etc/passwd').read() == ''\n", "line 2: calling open() is not allowed"),
        ("def f(outputs):\n    return outputs.__class__.__subclasses__() == []\n", "dunder attribute access"),
        ("def f(outputs):\n    return True\ndef g(outputs):\n    return False\n", "exactly one public function"),
        ("def f(answer):\n    return True\n", "parameters must be among inputs, outputs, expectations, trace"),
        ("from mlflow.genai.scorers import scorer\n@scorer\ndef f(outputs):\n    return True\n", "importing 'mlflow.genai.scorers' is not allowed"),
        ("def f(outputs):\n    return True\nwhile True:\n    pass\n", "only imports, constants and function definitions"),
    ],
)
def test_static_rejections(code, message):
    with pytest.raises(CustomCodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        analyse(code)


def test_code_that_raises_is_rejected_with_the_line_and_trace(traces):
    sample = traces[0][:2]
    code = "def f(outputs):\n    total = 0\n    return 1 / total > 0\n"
    with pytest.raises(CustomCodeError) as caught:
        run_custom(code, sample)
    message = str(caught.value)
    assert "f() raised ZeroDivisionError: division by zero (line 3) on trace " + sample[0].info.trace_id in message


def test_code_that_hangs_is_stopped(traces):
    sample = traces[0][:2]
    code = "def f(trace):\n    while True:\n        pass\n"
    with pytest.raises(CustomCodeError) as caught:
        run_custom(code, sample, per_call_timeout_s=1)
    assert f"f() timed out: it took longer than 1 s on trace {sample[0].info.trace_id}" in str(caught.value)


def test_values_that_vanish_from_metrics_are_rejected(traces):
    with pytest.raises(CustomCodeError, match=r"returned 'pass' \(str\) on trace .*return True/False or 'yes'/'no'"):
        run_custom("def f(outputs):\n    return 'pass'\n", traces[0][:1])
