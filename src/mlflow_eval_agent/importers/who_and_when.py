"""`who-and-when`: a folder of Who&When files (or one file), one failed multi-agent run each.

A file has `question`, `ground_truth`, the outcome (`is_correct` in the algorithm-generated split,
`is_corrected` in the hand-crafted one), `history` (turns `{role, name, content}`), `system_prompt`
(per agent) and the human labels `mistake_agent`, `mistake_step` (index into `history`),
`mistake_reason`. Each file is small and read whole; files are read one at a time.

Every history turn becomes one span named by its speaker (`name`, else `role`): the code
executor's turns (`Computer_terminal`, or any turn starting "exitcode:") are TOOL spans whose
input is the code blocks of the turn before and whose status is ERROR for a non-zero exit code;
a speaker called "human"/"user" without a name is the user; everyone else is an assistant turn
(CHAT_MODEL span). AG2 logs every turn after the first with role "user", so role is not used
when a name is present. The hand-crafted split holds Magentic-One logs (turns with a role and no
name): their speakers are read as the `magentic-one` importer reads them (speakers.py), so
`Orchestrator (-> WebSurfer)` is a span "Orchestrator" addressed to WebSurfer and the same run
gives the same spans from either source. Steps are `history` indexes (0-based), the unit of
`mistake_step`.

Checked by hand on the hand-crafted sample: in each of its 3 runs `history[mistake_step]` is a
turn of `mistake_agent` (WebSurfer) that the reason describes — run 1 step 12 is WebSurfer
clicking "NY Jidokwan Taekwondo" and landing on an unrelated KEYENCE page ("clicks on an
irrelevant website"), run 2 step 4 its first Bing search for "Ted Danson TV series list"
("information ... neither reliable nor satisfies the requirements"), run 3 step 32 its sixth
scroll down the 2015 APOD archive instead of opening the August 2015 entry. The
algorithm-generated split is pinned by its test (`mistake_step` equals the history index).

Labels (only with `--with-labels`): `is_correct` / `is_corrected` is the run's outcome (a run
with neither has no outcome label, and a notice says so); the decisive mistake is a step label on
`mistake_step` (category from a `labels` or `mistake_type` field when present); `ground_truth` is
the expected response.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .jsonstream import load_json_file
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
from .speakers import Speaker, executor_input, final_answer, is_executor, parse_speaker

FORMAT = "who-and-when"
USER_ROLES = frozenset({"human", "user"})
FINAL_SENTINELS = frozenset({"TERMINATE"})
OUTCOME_FIELDS = ("is_correct", "is_corrected")
CATEGORY_FIELDS = ("labels", "mistake_type")


def read(path: Path, with_labels: bool = False, labels_path: Path | None = None) -> Iterator[Record]:
    """Yield one Conversation (or Malformed) per file; labels are read from the files themselves."""
    del labels_path
    for file in run_files(path):
        try:
            run = load_json_file(file)
            conv = run_conversation(run, file.name, with_labels)
        except RecordError as exc:
            yield Malformed(where=file.name, reason=str(exc))
            continue
        if with_labels and run.get("mistake_step") is not None and not (conv.labels and conv.labels.failures):
            yield Notice(where=file.name, message=f"mistake_step {run.get('mistake_step')!r} is not a turn of its history; that label was not imported")
        if with_labels and conv.labels is not None and conv.labels.outcome is None:
            yield Notice(where=file.name, message=_outcome_problem(run))
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


def run_conversation(run: Any, file_name: str | None, with_labels: bool) -> Conversation:
    if not isinstance(run, dict) or not isinstance(run.get("history"), list) or not run["history"]:
        raise RecordError('expected an object with a non-empty "history" list')
    prompts = run.get("system_prompt") if isinstance(run.get("system_prompt"), dict) else {}
    history = [_checked(step, raw) for step, raw in enumerate(run["history"])]
    texts = [_text(raw.get("content")) for raw in history]
    speakers = [parse_speaker(str(raw.get("name") or raw.get("role") or "agent")) for raw in history]
    # Magentic-One logs (the hand-crafted split) name no speaker; its executor looks back further.
    magentic = not any(raw.get("name") for raw in history)
    turns = [_turn(step, raw, texts, speakers, magentic) for step, raw in enumerate(history)]
    question = run.get("question")
    question_id = str(run["question_ID"]) if run.get("question_ID") else None
    return Conversation(
        format=FORMAT,
        source_id=question_id or Path(file_name or "run").stem,
        source_key=question_id,
        source_file=file_name,
        name="group_chat",
        request=str(question) if question is not None else next((t.content for t in turns if t.content), None),
        response=final_answer(texts) or last_text(turns, "assistant", FINAL_SENTINELS),
        turns=tuple(turns),
        system_prompts={str(k): str(v) for k, v in prompts.items()},
        labels=_labels(run, len(turns)) if with_labels else None,
    )


def _checked(step: int, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RecordError(f"history turn {step} is not an object")
    return raw


def _text(content: Any) -> str | None:
    return content if isinstance(content, str) or content is None else json.dumps(content, ensure_ascii=False)


def _turn(step: int, raw: dict[str, Any], texts: list[str | None], speakers: list[Speaker], magentic: bool) -> Turn:
    content, speaker = texts[step], speakers[step]
    name = raw.get("name") or None
    extra: dict[str, Any] = {}
    if speaker.addressee or speaker.kind:
        extra = {"addressee": speaker.addressee, "source_role": str(name or raw.get("role"))}
    if is_executor(speaker.agent, content):
        return Turn(step=step, role="tool", name=speaker.agent, content=content, tool_input=executor_input(step, texts, speakers, magentic), **extra)
    if not name and speaker.agent.lower() in USER_ROLES:
        return Turn(step=step, role="user", content=content)
    return Turn(step=step, role="assistant", name=speaker.agent, content=content, **extra)


def _labels(run: dict[str, Any], turn_count: int) -> Labels:
    outcome = None
    field = next((f for f in OUTCOME_FIELDS if _as_bool(run.get(f)) is not None), None)
    if field is not None:
        correct = _as_bool(run[field])
        outcome = OutcomeLabel(passed=bool(correct), score=1.0 if correct else 0.0, reason=f"Who&When {field}")
    failures: tuple[StepLabel, ...] = ()
    step = _as_int(run.get("mistake_step"))
    if step is not None and 0 <= step < turn_count:
        category = next((run[f] for f in CATEGORY_FIELDS if isinstance(run.get(f), str) and run[f].strip()), None)
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


def _outcome_problem(run: dict[str, Any]) -> str:
    field = next((f for f in OUTCOME_FIELDS if f in run), None)
    if field is None:
        return "has neither is_correct nor is_corrected, so its outcome label was not imported; add one (true or false) to score this run"
    return f"{field} is {run[field]!r}, not true or false, so its outcome label was not imported; set it to true or false to score this run"


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
