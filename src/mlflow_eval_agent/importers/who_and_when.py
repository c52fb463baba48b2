"""`who-and-when`: a folder of Who&When files (or one file), one failed multi-agent run each.

A file has `question`, `ground_truth`, `is_correct`, `history` (turns `{role, name, content}`),
`system_prompt` (per agent) and the human labels `mistake_agent`, `mistake_step` (index into
`history`), `mistake_reason`. Each file is small and read whole; files are read one at a time.

Every history turn becomes one span named by its speaker (`name`, else `role`): the code
executor's turns (`Computer_terminal`, or any turn starting "exitcode:") are TOOL spans whose
input is the code blocks of the turn before and whose status is ERROR for a non-zero exit code;
a speaker called "human"/"user" without a name is the user; everyone else is an assistant turn
(CHAT_MODEL span). AG2 logs every turn after the first with role "user", so role is not used
when a name is present. Steps are `history` indexes (0-based), the unit of `mistake_step`.

Labels (only with `--with-labels`): `is_correct` is the run's outcome, the decisive mistake is a
step label on `mistake_step` (category from a `labels` field when present), `ground_truth` is the
expected response.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .model import (
    Conversation,
    Labels,
    Malformed,
    Notice,
    OutcomeLabel,
    Record,
    RecordError,
    SourceError,
    StepLabel,
    Turn,
    last_text,
)

FORMAT = "who-and-when"
EXECUTOR_NAMES = frozenset({"computer_terminal", "computerterminal"})
USER_ROLES = frozenset({"human", "user"})
FINAL_SENTINELS = frozenset({"TERMINATE"})
_CODE_BLOCK = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


def read(path: Path, with_labels: bool = False, labels_path: Path | None = None) -> Iterator[Record]:
    """Yield one Conversation (or Malformed) per file; labels are read from the files themselves."""
    del labels_path
    for file in run_files(path):
        try:
            run = _load(file)
            conv = run_conversation(run, file.name, with_labels)
        except RecordError as exc:
            yield Malformed(where=file.name, reason=str(exc))
            continue
        if with_labels and run.get("mistake_step") is not None and not (conv.labels and conv.labels.failures):
            yield Notice(where=file.name, message=f"mistake_step {run.get('mistake_step')!r} is not a turn of its history; that label was not imported")
        yield conv


def run_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SourceError(f"{path} is neither a Who&When file nor a folder of them.")
    files = sorted(path.glob("*.json"), key=lambda p: (0, int(p.stem), "") if p.stem.isdigit() else (1, 0, p.stem))
    if not files:
        raise SourceError(f"{path} holds no .json files; pass the folder of Who&When runs.")
    return files


def _load(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"could not be read ({exc})") from None
    except ValueError as exc:
        raise RecordError(f"not valid JSON ({exc})") from None


def run_conversation(run: Any, file_name: str | None, with_labels: bool) -> Conversation:
    if not isinstance(run, dict) or not isinstance(run.get("history"), list) or not run["history"]:
        raise RecordError('expected an object with a non-empty "history" list')
    prompts = run.get("system_prompt") if isinstance(run.get("system_prompt"), dict) else {}
    turns = [_turn(step, raw, run["history"]) for step, raw in enumerate(run["history"])]
    question = run.get("question")
    question_id = str(run["question_ID"]) if run.get("question_ID") else None
    return Conversation(
        format=FORMAT,
        source_id=question_id or Path(file_name or "run").stem,
        source_key=question_id,
        source_file=file_name,
        name="group_chat",
        request=str(question) if question is not None else next((t.content for t in turns if t.content), None),
        response=last_text(turns, "assistant", FINAL_SENTINELS),
        turns=tuple(turns),
        system_prompts={str(k): str(v) for k, v in prompts.items()},
        labels=_labels(run, len(turns)) if with_labels else None,
    )


def _turn(step: int, raw: Any, history: list[Any]) -> Turn:
    if not isinstance(raw, dict):
        raise RecordError(f"history turn {step} is not an object")
    content = raw.get("content")
    content = content if isinstance(content, str) or content is None else json.dumps(content, ensure_ascii=False)
    name = raw.get("name") or None
    speaker = str(name or raw.get("role") or "agent")
    if _is_executor(speaker, content):
        return Turn(step=step, role="tool", name=speaker, content=content, tool_input=_code_before(step, history))
    if not name and speaker.lower() in USER_ROLES:
        return Turn(step=step, role="user", content=content)
    return Turn(step=step, role="assistant", name=speaker, content=content)


def _is_executor(speaker: str, content: str | None) -> bool:
    return speaker.lower() in EXECUTOR_NAMES or bool(content and content.lstrip().lower().startswith("exitcode:"))


def _code_before(step: int, history: list[Any]) -> str | None:
    """The code blocks of the previous turn: what the executor was asked to run."""
    if step == 0 or not isinstance(history[step - 1], dict):
        return None
    blocks = _CODE_BLOCK.findall(str(history[step - 1].get("content") or ""))
    return "\n\n".join(b.rstrip("\n") for b in blocks) if blocks else None


def _labels(run: dict[str, Any], turn_count: int) -> Labels:
    outcome = None
    correct = _as_bool(run.get("is_correct"))
    if correct is not None:
        outcome = OutcomeLabel(passed=correct, score=1.0 if correct else 0.0, reason="Who&When is_correct")
    failures: tuple[StepLabel, ...] = ()
    step = _as_int(run.get("mistake_step"))
    if step is not None and 0 <= step < turn_count:
        category = run.get("labels") if isinstance(run.get("labels"), str) else None
        failures = (
            StepLabel(
                step=step,
                category=category,
                reason=str(run.get("mistake_reason") or ""),
                agent=str(run["mistake_agent"]) if run.get("mistake_agent") else None,
                details={"decisive": "true"},
            ),
        )
    expectations = {"expected_response": str(run["ground_truth"])} if run.get("ground_truth") is not None else {}
    return Labels(outcome=outcome, failures=failures, expectations=expectations)


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None
