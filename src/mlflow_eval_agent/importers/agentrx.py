"""AgentRx ground truth (`tau_ground_truth.json`, Magentic-One's `ground_truth.json`) → step labels.

The file is a JSON list of labelled runs: `{trajectory_id, failures: [{failure_id, step_number,
failure_category, step_reason, category_reason, failed_agent}], root_cause: {failure_id,
reason_for_root_cause}, failure_summary}`. It is small and read whole. Each failure becomes a
step label on its `step_number` (what that number counts differs by source: see the importers);
the failure whose `failure_id` is the root cause's says so in its details (`root_cause` "true",
and the annotator's `root_cause_reason`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .model import SourceError, StepLabel


class LabelledRun(BaseModel):
    model_config = ConfigDict(frozen=True)

    failures: tuple[StepLabel, ...] = ()
    summary: str | None = None


def read_ground_truth(labels_path: Path) -> dict[str, LabelledRun]:
    """{trajectory id: its failures} from an AgentRx ground-truth file."""
    try:
        entries = json.loads(labels_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"The labels file {labels_path} could not be read ({exc}); pass an AgentRx ground-truth JSON file.") from None
    if not isinstance(entries, list):
        raise SourceError(f"The labels file {labels_path} is not a JSON list of labelled runs; pass an AgentRx ground-truth file.")
    runs: dict[str, LabelledRun] = {}
    for entry in entries:
        if not isinstance(entry, dict) or "trajectory_id" not in entry:
            continue
        key = str(entry["trajectory_id"])
        before = runs.get(key, LabelledRun())
        summary = entry.get("failure_summary")
        runs[key] = LabelledRun(
            failures=before.failures + tuple(_step_labels(entry)),
            summary=before.summary or (str(summary) if summary else None),
        )
    return runs


def _step_labels(entry: dict[str, Any]) -> list[StepLabel]:
    root = entry.get("root_cause") if isinstance(entry.get("root_cause"), dict) else {}
    root_id = root.get("failure_id")
    labels = []
    for failure in entry.get("failures") or []:
        if not isinstance(failure, dict) or not isinstance(failure.get("step_number"), int) or isinstance(failure.get("step_number"), bool):
            continue
        # Ids are numbers, but one Magentic-One entry writes the root cause's as "1".
        is_root = root_id is not None and str(failure.get("failure_id")).strip() == str(root_id).strip()
        details = {
            "category_reason": str(failure.get("category_reason") or ""),
            "failure_id": str(failure.get("failure_id", "")),
            "root_cause": str(is_root).lower(),
        }
        if is_root and root.get("reason_for_root_cause"):
            details["root_cause_reason"] = str(root["reason_for_root_cause"])
        labels.append(
            StepLabel(
                step=failure["step_number"],
                category=failure.get("failure_category"),
                reason=str(failure.get("step_reason") or failure.get("category_reason") or ""),
                agent=failure.get("failed_agent"),
                details=details,
            )
        )
    return labels
