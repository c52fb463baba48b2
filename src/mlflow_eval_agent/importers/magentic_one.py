"""`magentic-one`: a folder of Magentic-One logs (or one log), with optional AgentRx failure labels.

A log is `<trajectory_id>.json`, a bare JSON list of turns `{role, content}`; the file stem is the
run's id. Roles are speaker labels: `human` (the task), `Orchestrator (thought)`,
`Orchestrator (-> WebSurfer)`, `Orchestrator (termination condition)`, `WebSurfer`, `FileSurfer`,
`Assistant` (the coder), `ComputerTerminal`. Each file is small and read whole, one at a time.

Spans, kept the same as the `who-and-when` importer's (its hand-crafted split holds the same
logs; both read speakers through speakers.py): `human` is the user's message (no span); every
agent that runs a model — the Orchestrator, WebSurfer, FileSurfer, Assistant — gets a CHAT_MODEL
span named by the agent, so `Orchestrator (-> WebSurfer)` is a span "Orchestrator" with
`eval_agent.import.addressee` = "WebSurfer" and the raw label in `eval_agent.import.source_role`.
WebSurfer's and FileSurfer's turns read like tool output ("I clicked ..."), but each is a model's
choice of action and its account of the result, and Who&When's AG2 runs give such agents
(`WebServing_Expert`) CHAT_MODEL spans too. `ComputerTerminal` runs no model: its turns are TOOL
spans whose input is the code it was given (the latest code blocks since its previous turn, else
the Orchestrator's instruction to it) and whose status is ERROR when it reports a non-zero exit
code ("The script ran, then exited with an error (POSIX exit code: 1)"; tool_errors.py). The
root's output is the log's "FINAL ANSWER:".

Steps: AgentRx's `step_number` is 1-based, so a turn's step is its list index + 1. Checked by
hand on all 5 labelled runs of the public sample (66 labels; docs/importers.md lists them): 65 land
on a turn of the failed agent or on the Orchestrator's instruction addressed to it — e.g. 0a65cb96
step 56 is WebSurfer clicking a 2008 APOD entry instead of August 2015, 114d5fd0 steps 19-31 are
`Orchestrator (-> FileSurfer)` asking FileSurfer to read a PDF, 0ec43718 step 10 is the
Orchestrator's ledger accepting WebSurfer's partial list (the root cause). The exception is
14569e28: its one label (Assistant, "invented a new operator") has step 12, whose turn is the
Orchestrator's "Next speaker Assistant"; the Assistant speaks at step 13 (that label counts from
0). Labels are placed on their step as given, never moved; a notice names every label whose step
is not a turn of, or addressed to, its failed agent.

Labels (only with `--with-labels`, from `--labels`, default `ground_truth.json` beside the logs):
every labelled run failed (outcome label failed, reason = the failure summary); each failure is a
step label (category, step reason, failed agent; the root cause's failure carries `root_cause`
"true" and the annotator's reason). A log without a ground-truth entry gets no labels at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .agentrx import LabelledRun, read_ground_truth
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
    Turn,
    first_text,
    last_text,
)
from .speakers import Speaker, executor_input, final_answer, is_executor, parse_speaker

FORMAT = "magentic-one"
DEFAULT_LABELS_FILE = "ground_truth.json"
USER_ROLES = frozenset({"human", "user"})


def default_labels(path: Path) -> Path | None:
    """The AgentRx ground truth in the logs' folder, when it is there."""
    candidate = (path if path.is_dir() else path.parent) / DEFAULT_LABELS_FILE
    return candidate if candidate.is_file() and candidate != path else None


def read(path: Path, with_labels: bool = False, labels_path: Path | None = None) -> Iterator[Record]:
    """Yield one Conversation (or Malformed) per log; with labels, the ground truth adds them."""
    labels_path = labels_path or (default_labels(path) if with_labels else None)
    files = log_files(path, labels_path)
    labelled = read_ground_truth(labels_path) if with_labels and labels_path else {}
    if with_labels and not labels_path:
        yield Notice(where=path.name, message=f"no {DEFAULT_LABELS_FILE} beside the logs and no --labels: no labels were imported")
    seen: set[str] = set()
    for file in files:
        try:
            conv = log_conversation(load_json_file(file), file, labelled if with_labels else None)
        except RecordError as exc:
            yield Malformed(where=file.name, reason=str(exc))
            continue
        seen.add(file.stem)
        misplaced = misplaced_labels(conv)
        if misplaced:
            yield Notice(where=file.name, message=misplaced)
        yield conv
    unmatched = sorted(set(labelled) - seen)
    if unmatched and labels_path is not None:
        yield Notice(where=labels_path.name, message=f"labels for {', '.join(unmatched)} match no log in {path.name}; ignored")


def log_files(path: Path, labels_path: Path | None) -> list[Path]:
    if path.is_file():
        if path.name == DEFAULT_LABELS_FILE or path == labels_path:
            raise SourceError(f"{path} is the labels file; pass the folder of Magentic-One logs (or one log) and the labels with --labels.")
        return [path]
    if not path.is_dir():
        raise SourceError(f"{path} is neither a Magentic-One log nor a folder of them.")
    beside = labels_path is not None and labels_path.parent.resolve() == path.resolve()
    skip = {DEFAULT_LABELS_FILE, *([labels_path.name] if beside and labels_path else [])}
    files = sorted(p for p in path.glob("*.json") if p.name not in skip)
    if not files:
        raise SourceError(f"{path} holds no .json logs; pass the folder of Magentic-One <trajectory_id>.json files.")
    return files


def log_conversation(log: Any, file: Path, labelled: dict[str, LabelledRun] | None) -> Conversation:
    """One Magentic-One log → Conversation (labels attached when `labelled` is given)."""
    if not isinstance(log, list) or not log:
        raise RecordError("expected a non-empty JSON list of {role, content} turns")
    for position, raw in enumerate(log):
        if not isinstance(raw, dict) or not isinstance(raw.get("role"), str) or not raw["role"].strip():
            raise RecordError(f"turn {position} is not an object with a role")
    texts = [_text(raw.get("content")) for raw in log]
    speakers = [parse_speaker(raw["role"]) for raw in log]
    turns = [_turn(position, raw["role"], texts, speakers) for position, raw in enumerate(log)]
    if not any(t.role == "assistant" for t in turns):
        raise RecordError("the log has no agent turn")
    run = labelled.get(file.stem) if labelled is not None else None
    return Conversation(
        format=FORMAT,
        source_id=file.stem,
        source_key=file.stem,
        source_file=file.name,
        name="group_chat",
        request=first_text(turns, "user"),
        response=final_answer(texts) or last_text(turns, "assistant"),
        turns=tuple(turns),
        labels=_labels(run) if labelled is not None and run is not None else None,
    )


def _text(content: Any) -> str | None:
    return content if isinstance(content, str) or content is None else json.dumps(content, ensure_ascii=False)


def _turn(position: int, role: str, texts: list[str | None], speakers: list[Speaker]) -> Turn:
    step, content, speaker = position + 1, texts[position], speakers[position]
    extra: dict[str, Any] = {"addressee": speaker.addressee, "source_role": role} if speaker.addressee or speaker.kind else {}
    if speaker.agent.lower() in USER_ROLES:
        return Turn(step=step, role="user", content=content)
    if is_executor(speaker.agent, content):
        return Turn(step=step, role="tool", name=speaker.agent, content=content, tool_input=executor_input(position, texts, speakers, look_back=True), **extra)
    return Turn(step=step, role="assistant", name=speaker.agent, content=content, **extra)


def _labels(run: LabelledRun) -> Labels:
    outcome = OutcomeLabel(passed=False, score=0.0, reason=run.summary or "AgentRx: the run failed")
    return Labels(outcome=outcome, failures=run.failures)


def misplaced_labels(conv: Conversation) -> str | None:
    """A notice naming the step labels whose turn is neither spoken by nor addressed to the failed agent."""
    if conv.labels is None:
        return None
    by_step = {t.step: t for t in conv.turns}
    problems = []
    for failure in conv.labels.failures:
        turn = by_step.get(failure.step)
        if turn is None:
            problems.append(f"step {failure.step} is past the log's {len(conv.turns)} turns (placed on the root span)")
        elif failure.agent and failure.agent.lower() not in {(turn.name or turn.role).lower(), (turn.addressee or "").lower()}:
            speaks = next((t.step for t in conv.turns if t.step > failure.step and (t.name or "").lower() == failure.agent.lower()), None)
            after = f"; {failure.agent} speaks next at step {speaks}" if speaks else ""
            problems.append(f"step {failure.step} ({failure.agent}) is a turn of {turn.name or turn.role}{after}")
    if not problems:
        return None
    return f"{len(problems)} of {len(conv.labels.failures)} labels are not on a turn of their failed agent, and stay on the step given: " + "; ".join(problems)
