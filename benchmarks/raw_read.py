"""The raw read: the floor the sql profile is measured against.

Definition (what `raw_read` does, nothing more): with Python's own `sqlite3` (no SQLAlchemy, no
MLflow), open the store read-only and run two plain queries over the experiment: its `trace_info`
rows (request_id, status, timestamp_ms, execution_time_ms), and its `spans` rows (trace_id,
span_id, parent_span_id, name, type, status, start/end time, model_name, content), fetched in
batches of 10,000; `orjson.loads` every span's stored JSON `content`. Nothing is computed from
the parsed spans beyond counting them. Whatever the profile does beyond this (its statistics, and
whatever it skips parsing) is the profile's own cost, so `sql seconds / raw seconds` says how
close the profile's hot loop is to reading and decoding the data.
"""

from __future__ import annotations

import sqlite3

import orjson

FETCH = 10_000


def raw_read(uri: str, experiment_id: str) -> dict:
    path = uri.removeprefix("sqlite:///")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        traces = conn.execute(
            "SELECT request_id, status, timestamp_ms, execution_time_ms FROM trace_info WHERE experiment_id = ?", (int(experiment_id),)
        ).fetchall()
        cursor = conn.execute(
            "SELECT trace_id, span_id, parent_span_id, name, type, status, start_time_unix_nano, end_time_unix_nano, model_name, content "
            "FROM spans WHERE experiment_id = ?", (int(experiment_id),))
        spans = parsed = 0
        loads = orjson.loads
        while batch := cursor.fetchmany(FETCH):
            spans += len(batch)
            for row in batch:
                parsed += isinstance(loads(row[9]), dict)
    finally:
        conn.close()
    return {"traces": len(traces), "spans": spans, "parsed": parsed}
