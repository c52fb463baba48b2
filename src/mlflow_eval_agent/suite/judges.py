"""MLflow's built-in scorers and LLM judges: which exist, what they need, and whether parameters work.

Each problem is returned as a sentence the agent can act on ("RetrievalGroundedness needs RETRIEVER
spans, and the dataset's traces have none"), never raised from deep inside MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .facts import TraceFacts

JudgeValueType = Literal["bool", "yes_no"]
TEMPLATE_VARIABLES = ("inputs", "outputs", "expectations", "trace")

Needs = Literal["retriever", "tools", "expectations", "expected_response", "guidelines_expectation", "sessions"]


@dataclass(frozen=True)
class Builtin:
    name: str
    needs_model: bool
    needs: tuple[Needs, ...] = ()
    summary: str = ""


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin("Safety", True, (), "harmful or unsafe content in the answer"),
        Builtin("RelevanceToQuery", True, (), "the answer addresses the request"),
        Builtin("Fluency", True, (), "the answer reads naturally"),
        Builtin("Completeness", True, (), "the answer covers every part of the request"),
        Builtin("Summarization", True, (), "a summary is faithful to its input"),
        Builtin("RetrievalGroundedness", True, ("retriever",), "the answer is supported by retrieved documents"),
        Builtin("RetrievalRelevance", True, ("retriever",), "retrieved documents are relevant to the request"),
        Builtin("RetrievalSufficiency", True, ("retriever", "expectations"), "retrieved documents contain the expected facts"),
        Builtin("Correctness", True, ("expectations",), "the answer matches expected_response / expected_facts"),
        Builtin("Equivalence", True, ("expected_response",), "the answer is equivalent to expected_response"),
        Builtin("ExpectationsGuidelines", True, ("guidelines_expectation",), "the answer follows per-row guidelines expectations"),
        Builtin("ToolCallCorrectness", True, ("tools",), "the right tools were called with the right arguments"),
        Builtin("ToolCallEfficiency", True, ("tools",), "no redundant tool calls"),
        Builtin("UserFrustration", True, ("sessions",), "session-level: the user got frustrated"),
        Builtin("ConversationCompleteness", True, ("sessions",), "session-level: the user's requests were all handled"),
        Builtin("ConversationalSafety", True, ("sessions",), "session-level: safety over a conversation"),
        Builtin("ConversationalToolCallEfficiency", True, ("sessions", "tools"), "session-level: tool-call efficiency"),
        Builtin("ConversationalRoleAdherence", True, ("sessions",), "session-level: the assistant kept its role"),
        Builtin("ConversationalGuidelines", True, ("sessions",), "session-level: guidelines over a conversation (params: guidelines)"),
        Builtin("PIIDetection", False, (), "model-free: personal data in the answer (params: pii_types)"),
        Builtin("ResponseLength", False, (), "model-free: answer length bounds (params: min_length, max_length, unit)"),
    )
}

EXPECTED_ANSWER_KEYS = ("expected_response", "expected_facts")
# Built-ins left out on purpose, and what to use instead.
WITHHELD = {
    "RegexMatch": "RegexMatch runs its pattern on Python's backtracking regex engine, where a hostile pattern can hang a run; "
    "use the output_regex check (RE2) instead",
}


def unmet_needs(builtin: Builtin, facts: TraceFacts) -> str | None:
    """Why this built-in cannot work on these traces, or None."""
    for need in builtin.needs:
        problem = _need_problem(need, facts)
        if problem:
            return f"{builtin.name} {problem}"
    return None


def _need_problem(need: Needs, facts: TraceFacts) -> str | None:
    if need == "retriever" and not facts.has_span_type("RETRIEVER"):
        return "needs RETRIEVER spans, and the dataset's traces have none"
    if need == "tools" and not facts.tool_names:
        return "needs TOOL spans, and the dataset's traces have none"
    expectations = f"expectations on the dataset's traces: {facts.known(facts.expectation_names)}"
    if need == "expectations" and not any(k in facts.expectation_names for k in EXPECTED_ANSWER_KEYS):
        return f"needs expected_response or expected_facts expectations ({expectations})"
    if need == "expected_response" and "expected_response" not in facts.expectation_names:
        return f"needs an expected_response expectation ({expectations})"
    if need == "guidelines_expectation" and "guidelines" not in facts.expectation_names:
        return f"needs a 'guidelines' expectation ({expectations})"
    if need == "sessions" and not facts.session_traces:
        return "is session-level and needs traces with mlflow.trace.session metadata; the dataset has none"
    return None


def builtin_problem(builtin_name: str, params: dict[str, Any]) -> str | None:
    """Instantiate the built-in with these parameters; a sentence if MLflow rejects them."""
    if builtin_name in WITHHELD:
        return WITHHELD[builtin_name]
    if builtin_name not in BUILTINS:
        return f"unknown built-in scorer {builtin_name!r}; choose one of: {', '.join(BUILTINS)}"
    if "model" in params:
        return "do not set 'model' on a built-in: the judge model is chosen when the suite runs (--judge-model)"
    from mlflow.genai.scorers import builtin_scorers

    cls = getattr(builtin_scorers, builtin_name)
    known = set(cls.model_fields) - {"required_columns", "description", "aggregations", "inference_params", "extra_headers", "timeout"}
    unknown = sorted(set(params) - known)
    if unknown:
        return f"{builtin_name} has no parameter(s) {', '.join(unknown)}; it accepts: {', '.join(sorted(known))}"
    try:
        cls(**params)
    except Exception as exc:  # pydantic or MLflow validation: report MLflow's own words
        return f"{builtin_name}({_args(params)}) was rejected by MLflow: {_one_line(exc)}"
    return None


def make_judge_problem(name: str, instructions: str, value_type: JudgeValueType) -> str | None:
    """Build the judge without calling a model; MLflow checks the template variables."""
    if not any(f"{{{{ {v} }}}}" in instructions or f"{{{{{v}}}}}" in instructions for v in TEMPLATE_VARIABLES):
        return "instructions must use at least one of {{ inputs }}, {{ outputs }}, {{ expectations }}, {{ trace }}"
    from mlflow.genai.judges import make_judge

    try:
        make_judge(name=name, instructions=instructions, feedback_value_type=judge_value_type(value_type))
    except Exception as exc:
        return f"make_judge rejected the instructions: {_one_line(exc)}"
    return None


def judge_value_type(value_type: JudgeValueType) -> Any:
    return bool if value_type == "bool" else Literal["yes", "no"]


def _args(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:400]
