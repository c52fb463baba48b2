"""The evaluation dataset: records from chosen traces, keeping their trace ids.

Selection is stratified: each stratum (an error signature, hidden failures, slow traces, normal
traffic, ...) gets its share before any stratum gets more, so rare failure modes are never crowded
out by common ones. The dataset is written to the session (`evaluation/dataset.json`, always) and
registered as an MLflow evaluation dataset when the store supports it. MLflow keeps one record per
distinct `inputs` (it merges the rest), so the dataset takes one trace per distinct input as well:
the file and the registered dataset hold the same records, and either evaluates the same traces.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from .facts import facts_from_traces
from .spec import DatasetRecord, DatasetSpec

FETCH_CHUNK = 50
DEFAULT_SIZE = 40


class DatasetError(Exception):
    """The dataset could not be built; the message says what to change."""


def select_stratified(strata: dict[str, Sequence[str]], size: int) -> list[tuple[str, str]]:
    """Pick up to `size` (trace_id, stratum) pairs, round-robin over strata in their given order.

    A trace listed in several strata is taken once, under the first stratum that reaches it.
    Deterministic: the same input always gives the same selection.
    """
    queues = {name: list(ids) for name, ids in strata.items() if ids}
    chosen: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(chosen) < size and any(queues.values()):
        for name, queue in queues.items():
            while queue and queue[0] in seen:
                queue.pop(0)
            if queue and len(chosen) < size:
                trace_id = queue.pop(0)
                seen.add(trace_id)
                chosen.append((trace_id, name))
    return chosen


def fetch_traces(experiment_id: str, trace_ids: Sequence[str]) -> list[Any]:
    """MLflow Trace objects for these ids, in the same order; DatasetError names any missing."""
    import mlflow

    from ..traces.drilldown import load_traces
    from ..traces.locations import on_databricks_store

    found: dict[str, Any] = {}
    if on_databricks_store(None):  # the workspace: each trace from its location (traces/locations.py)
        found = {t.info.trace_id: t for t in load_traces(None, list(trace_ids), experiment_id)}
    for start in range(0, len(trace_ids) if not found else 0, FETCH_CHUNK):
        chunk = list(trace_ids[start : start + FETCH_CHUNK])
        quoted = ", ".join(f"'{t}'" for t in chunk)
        try:
            traces = mlflow.search_traces(
                locations=[experiment_id], filter_string=f"attributes.request_id IN ({quoted})", return_type="list", max_results=len(chunk)
            )
        except Exception:  # a store without IN on trace ids: one by one
            traces = [t for t in (mlflow.get_trace(t) for t in chunk) if t is not None]
        found.update({t.info.trace_id: t for t in traces})
    missing = [t for t in trace_ids if t not in found]
    if missing:
        raise DatasetError(
            f"{len(missing)} trace id(s) not found in experiment {experiment_id}: {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}; use ids returned by the trace tools"
        )
    return [found[t] for t in trace_ids]


def record_from_trace(trace: Any, stratum: str) -> DatasetRecord:
    root = next((s for s in trace.data.spans if not s.parent_id), None)
    expectations = {a.name: a.value for a in (trace.info.assessments or []) if a.expectation is not None}
    return DatasetRecord(
        trace_id=trace.info.trace_id,
        stratum=stratum,
        inputs=root.inputs if root is not None else None,
        outputs=root.outputs if root is not None else None,
        expectations=expectations,
    )


def inputs_key(inputs: Any) -> str:
    """What MLflow deduplicates evaluation-dataset records on: the root span's inputs as sorted JSON."""
    return json.dumps(inputs if inputs is not None else {}, sort_keys=True, default=str)


def build_dataset(name: str, experiment_id: str, picks: Iterable[tuple[str, str]], size: int | None = None) -> tuple[DatasetSpec, list[Any]]:
    """Fetch the picked traces and make the dataset spec (records + facts); also returns the traces.

    Picks are taken in order, one trace per distinct input (a later trace with the inputs of an
    earlier one is left out and listed in `merged`), up to `size` traces (None: all)."""
    picks = list(picks)
    if not picks:
        raise DatasetError("the dataset needs at least one trace")
    duplicates = sorted({t for t, _ in picks if sum(1 for u, _ in picks if u == t) > 1})
    if duplicates:
        raise DatasetError(f"trace ids listed twice: {', '.join(duplicates[:5])}")
    fetched = fetch_traces(experiment_id, [t for t, _ in picks])
    records, traces, first_with, merged = [], [], {}, {}
    for trace, (trace_id, stratum) in zip(fetched, picks, strict=True):
        if size is not None and len(records) >= size:
            break
        record = record_from_trace(trace, stratum)
        key = inputs_key(record.inputs)
        if key in first_with:
            merged[trace_id] = first_with[key]
            continue
        first_with[key] = trace_id
        records.append(record)
        traces.append(trace)
    spec = DatasetSpec(name=name, experiment_id=experiment_id, records=records, facts=facts_from_traces(traces), merged=merged)
    return spec, traces


def register_dataset(spec: DatasetSpec, traces: list[Any], tracking_uri: str) -> DatasetSpec:
    """Store the records as an MLflow evaluation dataset where the tracking store supports it.

    Records keep their source trace id. Their inputs are distinct (`build_dataset`), so MLflow keeps
    every one and the registered dataset holds what `evaluation/dataset.json` holds; the count is
    checked after the merge and a difference is said in `registration`.
    """
    if tracking_uri.startswith("databricks"):
        return spec.model_copy(update={"registration": (
            "file only: on Databricks an evaluation dataset is a Unity Catalog table; register it with "
            "mlflow.genai.datasets.create_dataset(name='<catalog>.<schema>.<table>') if you want one"
        )})
    try:
        dataset = _existing_or_new(spec.name, spec.experiment_id)
        dataset.merge_records(traces)
        stored = len(dataset.to_df())
    except Exception as exc:  # file stores and older servers have no dataset API
        reason = " ".join(str(exc).split())[:300]
        return spec.model_copy(update={"registration": f"file only: the tracking store did not accept an evaluation dataset ({type(exc).__name__}: {reason})"})
    held = f"{stored} records" if stored == len(spec.records) else f"{stored} of the {len(spec.records)} records (MLflow merged the others)"
    return spec.model_copy(update={
        "mlflow_dataset_id": dataset.dataset_id,
        "registration": f"MLflow evaluation dataset {spec.name!r} (id {dataset.dataset_id}, {held}) in experiment {spec.experiment_id}",
    })


def _existing_or_new(name: str, experiment_id: str) -> Any:
    """The session's dataset, emptied (a re-chosen dataset replaces the old records), or a new one."""
    from mlflow.genai.datasets import create_dataset, get_dataset

    try:
        dataset = get_dataset(name=name)
    except Exception:
        return create_dataset(name=name, experiment_id=[experiment_id], tags={"created_by": "mlflow-eval-agent"})
    old = list(dataset.to_df().get("dataset_record_id", []))
    if old:
        dataset.delete_records(old)
    return dataset


def evenly_spaced(items: Sequence[str], count: int) -> list[str]:
    """`count` items spread over the whole sequence (deterministic, covers early and late traffic)."""
    if count >= len(items):
        return list(items)
    if count <= 0:
        return []
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]
