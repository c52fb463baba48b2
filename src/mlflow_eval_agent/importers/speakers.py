"""Who speaks in a group-chat log, shared by the `who-and-when` and `magentic-one` importers.

Magentic-One writes the speaker as a role label that also says what kind of message it is:
`Orchestrator (thought)`, `Orchestrator (-> WebSurfer)` (the Orchestrator addressing WebSurfer),
`Orchestrator (termination condition)`. The agent is the part before the parentheses; an arrow
inside them names the addressee, anything else is the message's kind. AG2 names such as
`Planner_Expert` have no parentheses and stay as they are. Both importers call `parse_speaker`,
so the same run imported from Who&When's hand-crafted split or from AgentRx's Magentic-One logs
gives spans with the same names.

The code executor (AG2's `Computer_terminal`, Magentic-One's `ComputerTerminal`) runs no model:
its turns are tool results, and what it ran is the code of the turn that asked for it
(`executor_input`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

EXECUTOR_NAMES = frozenset({"computer_terminal", "computerterminal"})
_LABEL = re.compile(r"^\s*(?P<agent>[^()]*?)\s*\((?P<note>[^()]*)\)\s*$")
_ADDRESSEE = re.compile(r"^\s*->\s*(?P<to>.+?)\s*$")
# AG2 code as the who-and-when importer has always read it (kept as is: the content hashes of
# traces already imported depend on it).
_AG2_BLOCK = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
# A fenced block whose fences start their lines: Magentic-One's plans mention "```python code
# blocks" in their prose, which the looser pattern takes for a fence.
_FENCED_BLOCK = re.compile(r"^[ \t]*```[^\n`]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
_FINAL_ANSWER = re.compile(r"^\s*FINAL ANSWER:\s*(?P<answer>.*?)\s*$", re.MULTILINE)


class Speaker(BaseModel):
    model_config = ConfigDict(frozen=True)

    agent: str
    # Whom the message is addressed to (`Orchestrator (-> WebSurfer)` → "WebSurfer").
    addressee: str | None = None
    # The rest of the label when it is not an addressee ("thought", "termination condition").
    kind: str | None = None


def parse_speaker(label: str) -> Speaker:
    """`Orchestrator (-> WebSurfer)` → agent Orchestrator addressing WebSurfer; other labels unchanged."""
    match = _LABEL.match(label)
    if not match or not match.group("agent"):
        return Speaker(agent=label)
    note = match.group("note").strip()
    to = _ADDRESSEE.match(note)
    if to:
        return Speaker(agent=match.group("agent"), addressee=to.group("to"))
    return Speaker(agent=match.group("agent"), kind=note or None)


def is_executor(agent: str, content: str | None) -> bool:
    """The code executor's turn: by its name, or by AG2's "exitcode:" report."""
    return agent.lower() in EXECUTOR_NAMES or bool(content and content.lstrip().lower().startswith("exitcode:"))


def code_blocks(text: str | None, pattern: re.Pattern[str] = _FENCED_BLOCK) -> str | None:
    blocks = pattern.findall(text or "")
    return "\n\n".join(b.rstrip("\n") for b in blocks) if blocks else None


def executor_input(position: int, texts: Sequence[str | None], speakers: Sequence[Speaker], look_back: bool) -> str | None:
    """What the executor at `position` was given to run.

    AG2's executor runs the code of the last message only ("There is no code from the last 1
    message for me to execute"): the code blocks of the turn just before. Magentic-One's looks
    further back (`look_back`): between the code and its run sits the Orchestrator's "Next speaker
    ComputerTerminal", so it is the latest code blocks since the executor's previous turn, else the
    latest message addressed to the executor (the Orchestrator sometimes sends a bare command).
    """
    if position == 0:
        return None
    if not look_back:
        return code_blocks(texts[position - 1], _AG2_BLOCK)
    agent = speakers[position].agent
    addressed = None
    for earlier in range(position - 1, -1, -1):
        if is_executor(speakers[earlier].agent, texts[earlier]):
            break
        found = code_blocks(texts[earlier])
        if found is not None:
            return found
        if addressed is None and speakers[earlier].addressee == agent:
            addressed = texts[earlier]
    return addressed


def final_answer(texts: Sequence[str | None]) -> str | None:
    """The answer after the last "FINAL ANSWER:" line (Magentic-One prints it at the end of the log)."""
    for text in reversed(texts):
        found = _FINAL_ANSWER.findall(text or "")
        if found:
            return found[-1]
    return None
