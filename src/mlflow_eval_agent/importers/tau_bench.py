"""`tau-bench`: a tau-bench results file (a JSON array of runs), with optional AgentRx failure labels.

Each run has `task_id`, `reward`, `info.task` (user instruction, expected `actions`), `trial` and
`traj`, the conversation as OpenAI chat messages. The array is streamed element by element, so the
file's size does not matter; the labels file is small and read whole.

Steps: the labels' `step_number` is the message's `index` field, which counts the system policy
as step 1 (so step = list position + 1). Checked on the corpus: run 2 step 7 is the assistant's
"there are 11 available T-shirt options" (the miscount the label describes), run 20 step 49 is the
`exchange_delivered_order_items` call whose result at step 50 is "Error: non-delivered order cannot
be exchanged", and user-simulator failures (Underspecified User Intent) point at user messages.
When a message has no `index`, its position + 1 is used.

Labels (only with `--with-labels`): `reward` is the run's outcome (passed when reward >= 1); each
failure of `tau_ground_truth.json` (matched on `trajectory_id` = `task_id`) is a step label; the
expected `actions` and the user's `instruction` are expectations.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .agentrx import read_ground_truth
from .jsonstream import MalformedStream, iter_json_array
from .model import Labels, Malformed, Notice, OutcomeLabel, Record, RecordError, SourceError, StepLabel
from .openai_chat import conversation, turns_from_messages

FORMAT = "tau-bench"
DEFAULT_LABELS_FILE = "tau_ground_truth.json"


def default_labels(path: Path) -> Path | None:
    """The AgentRx ground truth beside the results file, when it is there."""
    candidate = path.parent / DEFAULT_LABELS_FILE
    return candidate if candidate.is_file() and candidate != path else None


def read(path: Path, with_labels: bool = False, labels_path: Path | None = None) -> Iterator[Record]:
    """Yield one Conversation per run; with labels, `labels_path` (default: the file beside) adds step labels."""
    if path.is_dir():
        raise SourceError(f"{path} is a folder; pass the tau-bench results file (a JSON list of runs).")
    labels_path = labels_path or (default_labels(path) if with_labels else None)
    step_labels = read_step_labels(labels_path) if with_labels and labels_path else {}
    if with_labels and not labels_path:
        yield Notice(where=path.name, message=f"no {DEFAULT_LABELS_FILE} beside it: only run outcomes and expected actions are imported as labels")
    seen: set[str] = set()
    with path.open("r", encoding="utf-8") as stream:
        elements = iter_json_array(stream)
        element = 0
        while True:
            try:
                run = next(elements)
            except StopIteration:
                break
            except MalformedStream as exc:
                yield Malformed(where=f"{path.name} element {exc.element}", reason=f"{exc}; the rest of the file was not read")
                break
            try:
                conv = run_conversation(run, path.name, step_labels if with_labels else None)
                seen.add(_task_key(run))
                yield conv
            except RecordError as exc:
                yield Malformed(where=f"{path.name} element {element}", reason=str(exc))
            element += 1
    unmatched = sorted(set(step_labels) - seen, key=_natural)
    if unmatched:
        yield Notice(where=labels_path.name if labels_path else "", message=f"labels for runs {', '.join(unmatched)} match no run in {path.name}; ignored")


def run_conversation(run: Any, file_name: str | None, step_labels: dict[str, list[StepLabel]] | None) -> Any:
    """One tau-bench run → Conversation (labels attached when `step_labels` is given)."""
    if not isinstance(run, dict):
        raise RecordError("a run is not an object")
    if "task_id" not in run or not isinstance(run.get("traj"), list):
        raise RecordError('a run needs "task_id" and a "traj" list of messages')
    turns = turns_from_messages(run["traj"], _step_of)
    source_id = f"task {run['task_id']}" + (f" trial {run['trial']}" if run.get("trial") is not None else "")
    labels = _labels(run, step_labels.get(_task_key(run), [])) if step_labels is not None else None
    return conversation(FORMAT, source_id, turns, file_name, source_key=source_id, name="agent", labels=labels)


def _step_of(position: int, message: dict[str, Any]) -> int:
    index = message.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else position + 1


def _task_key(run: dict[str, Any]) -> str:
    return str(run.get("task_id"))


def _natural(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (1 << 62, key)


def _labels(run: dict[str, Any], failures: list[StepLabel]) -> Labels:
    outcome = None
    reward = run.get("reward")
    if isinstance(reward, int | float) and not isinstance(reward, bool):
        outcome = OutcomeLabel(passed=reward >= 1.0, score=float(reward), reason=f"tau-bench reward {reward}")
    task = (run.get("info") or {}).get("task") or {}
    expectations = {}
    if task.get("actions"):
        expectations["expected_tool_calls"] = task["actions"]
    if task.get("instruction"):
        expectations["user_instruction"] = task["instruction"]
    return Labels(outcome=outcome, failures=tuple(failures), expectations=expectations)


def read_step_labels(labels_path: Path) -> dict[str, list[StepLabel]]:
    """AgentRx ground truth → step labels by task id."""
    return {key: list(run.failures) for key, run in read_ground_truth(labels_path).items()}
