"""The spark engine against the known-truth fixtures: UC-schema tables written from the same store the sql
and api engines read, profiled by pyspark in local mode; the profiles agree number for number.

pyspark and Java are required (dev dependencies; .ci/run installs Java): without them this file fails.
"""

from __future__ import annotations

import re

import pytest

from mlflow_eval_agent.traces.profile import build_profile
from mlflow_eval_agent.traces.spark_profile import spark_profile
from mlflow_eval_agent.traces.uc_schema import UcLocation
from tests.fakes.profile_fixtures import SeededStore
from tests.fakes.seeded_support_traces import BASE_MS
from tests.fakes.uc_tables import column_types, expected_types, write_uc_tables

# The local session's own catalog stands in for a UC catalog: `spark_catalog.uc_test.support_otel_spans`.
LOCATION = UcLocation("spark_catalog", "uc_test", "support")
# Local Spark pays a second or more per job on a loaded 2-core machine and a profile is ~60 jobs.
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("test-spark-profile")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.default.parallelism", "1").config("spark.driver.memory", "2g")  # 1g ran out of aggregation memory (AGGREGATE_OUT_OF_MEMORY) once, with the module's cached tables
               .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def tables(spark, seeded_store: SeededStore, tmp_path_factory):
    """The UC tables as parquet, registered both as temp views (the `tables` mapping) and at the
    location's own names, as external tables of the session catalog."""
    folder = tmp_path_factory.mktemp("uc")
    views = write_uc_tables(spark, seeded_store.uri, seeded_store.support_id, folder, LOCATION)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {LOCATION.schema}")
    for kind, name in (("spans", LOCATION.spans_table), ("annotations", LOCATION.annotations_table)):
        spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING parquet LOCATION '{folder / kind}'")
    return views


@pytest.fixture(scope="module")
def sql_profile(seeded_store: SeededStore):
    return build_profile(seeded_store.uri, seeded_store.support_id)


@pytest.fixture(scope="module")
def profile(spark, tables, seeded_store: SeededStore, capsys_module):
    """`analyze --engine spark --trace-location ... --json`, in this process (the active SparkSession is
    the one the engine finds), reading the tables at the location's own names."""
    from mlflow_eval_agent.cli import main
    from mlflow_eval_agent.traces.profile_model import TraceProfile

    code = main(["analyze", "--engine", "spark", "--trace-location", LOCATION.name, "--tracking-uri", seeded_store.uri, "--json"])
    out, err = capsys_module.readouterr()
    assert code == 0, err
    return TraceProfile.model_validate_json(out)


@pytest.fixture(scope="module")
def capsys_module(request):
    """capsys for a module-scoped fixture (pytest's own is function-scoped)."""
    from _pytest.capture import CaptureFixture, SysCapture

    capture = CaptureFixture(SysCapture, request, _ispytest=True)
    capture._start()
    yield capture
    capture.close()


def as_uc_ids(value, location: UcLocation = LOCATION):
    """The sql profile's `tr-<hex>` ids as the UC engine shows them: `trace:/<location>/<hex>`."""
    text = __import__("json").dumps(value)
    return __import__("json").loads(re.sub(r'"tr-([0-9a-f]{32})"', lambda m: f'"{location.trace_id(m.group(1))}"', text))


def numbers(p) -> dict:
    """Everything but when and how it was read, and the hash sample (it hashes the ids, which differ).
    The experiment is left out too: a UC location is profiled without one (its id is the location)."""
    return p.model_dump(exclude={"source", "generated_at", "sample_trace_ids", "experiment_id", "experiment_name"})


def test_tables_have_the_exact_uc_schema(spark, tables):
    from mlflow_eval_agent.traces.uc_schema import ANNOTATIONS_COLUMNS, SPANS_COLUMNS

    assert column_types(spark.table(tables["spans"])) == expected_types(spark, SPANS_COLUMNS)
    assert column_types(spark.table(tables["annotations"])) == expected_types(spark, ANNOTATIONS_COLUMNS)
    assert dict(column_types(spark.table(tables["spans"])))["attributes"] == "variant"


def test_spark_and_sql_engines_agree_number_for_number(profile, sql_profile):
    assert profile.source.path == "spark" and profile.experiment_id == LOCATION.name
    expected = as_uc_ids(numbers(sql_profile))
    got = numbers(profile)
    differing = sorted(k for k in expected if expected[k] != got.get(k))
    assert differing == [], {k: (expected[k], got.get(k)) for k in differing}


def test_the_known_truth_through_spark(profile, seeded_store: SeededStore):
    traces = seeded_store.traces
    errors = sum(s.state == "ERROR" for s in traces)
    assert profile.trace_count == 200 and profile.status_counts == {"OK": 200 - errors, "ERROR": errors}
    assert profile.hidden_failures.count == 15
    assert {s.signature for s in profile.error_signatures} == {
        "TimeoutError: timed out after <N>s for order <N>", "ValueError: bad order id <STR>",
        "RateLimitError: Error code: 429 - Rate limit reached (request <ID>)",
    }
    assert profile.time_range.first_ms == BASE_MS
    assert all(t.startswith(f"trace:/{LOCATION.name}/") for t in profile.hidden_failures.trace_ids)
    assert profile.trajectory.scanned == 200


def test_sample_is_the_smallest_hashes_of_clean_ok_traces(profile, seeded_store: SeededStore):
    import zlib

    clean = [LOCATION.trace_id(s.spec.trace_id) for s in seeded_store.traces if s.state == "OK" and not (s.timeout or s.rate_limit)]
    assert profile.sample_trace_ids == sorted(clean, key=lambda t: (zlib.crc32(t.encode()), t))[:25]


def test_limits_keep_the_most_recent_traces(spark, tables, seeded_store: SeededStore):
    limited = spark_profile(spark, LOCATION, seeded_store.support_id, max_traces=50, tables=tables)
    assert (limited.trace_count, limited.source.truncated) == (50, True)
    assert limited.time_range.first_ms == BASE_MS + 150 * 60_000
    sql = build_profile(seeded_store.uri, seeded_store.support_id, max_traces=50, trajectory_scan=0)
    assert numbers(limited) == as_uc_ids(numbers(sql))


def test_a_filter_string_is_refused_with_the_reason(spark, tables):
    from mlflow_eval_agent.traces.source import InvalidQuery

    with pytest.raises(InvalidQuery, match="--since / --max-traces"):
        spark_profile(spark, LOCATION, "x", filter_string="attributes.status = 'ERROR'", tables=tables)


def test_base_package_works_without_pyspark():
    """pyspark is an optional extra: with it unimportable, the CLI and every traces module import, and
    the spark engine simply finds no Spark. (MLflow itself imports pyspark when it is installed, so
    'not in sys.modules' would test MLflow, not us.)"""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pyspark', 'py4j'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import mlflow_eval_agent.cli, mlflow_eval_agent.traces.profile, mlflow_eval_agent.traces.spark_engine\n"
        "from mlflow_eval_agent.traces.spark_profile import active_spark\n"
        "print(active_spark())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "None"


def test_engine_choice():
    from mlflow_eval_agent.traces.source import InvalidQuery
    from mlflow_eval_agent.traces.spark_engine import choose_engine

    assert choose_engine("auto", "main.traces.support", spark=object()) == "spark"
    assert choose_engine("auto", "main.traces.support", spark=None) == "auto"  # no Spark here: build_profile as before
    assert choose_engine("auto", None, spark=object()) == "auto"
    assert choose_engine("api", "main.traces.support", spark=object()) == "api"
    with pytest.raises(InvalidQuery, match="--trace-location"):
        choose_engine("spark", None)
    with pytest.raises(InvalidQuery, match="not one of"):
        choose_engine("duckdb", None)


def test_analyze_engine_spark_without_a_location_is_a_usage_error(capsys, seeded_store: SeededStore):
    from mlflow_eval_agent.cli import main

    code = main(["analyze", "--engine", "spark", "-e", seeded_store.support_id, "--tracking-uri", seeded_store.uri])
    assert code == 2
    assert "--trace-location" in capsys.readouterr().err


# --- the SQL expressions against the builder's Python definitions (traces/spark_sql.py) ---------------

TRICKY_MESSAGES = [
    "timed out after 30s for order 12345", "Error code: 429 - Rate limit reached (request req_8fz2k1abc)", "status: 500 at /var/log/x.py line 3",
    "  \n\n  KeyError: 'x'  \n tb", "HTTP 404 and code=503, status 42, code: 4290 status:  201.5", "uuid 123e4567-e89b-12d3-a456-426614174000 at 2024-01-02T03:04:05Z",
    "mail bob@example.com ip 10.0.0.1:8080 addr 0xdeadbeef url https://x.y/z?q=1", "gpt-4o v2 failed -12.5e3 +7 1,000,000", "", None, "   ",
    "Ünïcödé ٤٢٩ 数字123 ᵃ", "a\u2028b", "x\x1cy", "tab\there  spaces", "C:\\Users\\me\\file.txt and ~/a/b.py and /usr/lib/ ok",
    "hash abcdef0123456789 id order-12345 ab-1234", "status=429", "STATUS: 503 Code 200", "\u017ftatus: 500", "x" * 400 + " 12",
    "my.pkg.CustomError: boom", "lower.case: not a type", "ValueError:", "ratio: 3",
]
TRICKY_PAYLOADS = [
    '{"a": 1}', '{"messages": [{"role": "user", "content": "hi"}]}', '{"choices": [{"message": {"role": "assistant", "content": ""}}]}',
    '{"choices": [{"message": {"role": "assistant", "content": "", "tool_calls": [{"id": 1}]}}]}', '{"choices": []}',
    '{"role": "assistant", "content": "  "}', '{"role": "assistant", "content": "", "extra": 1}', '{"answer": ""}', '{"a": {"b": {"c": {"d": ""}}}}',
    '{"a": {"b": {"c": ""}}}', '[]', '[{"role": "x"}]', '[1, ""]', '["", " "]', '""', '"  "', '"x"', 'null', 'true', 'false', '0', '1.5',
    'not json', '', '   ', '{"a":1} x', '{"a": 1, "a": ""}', '[{"role":"u"},{"x":1}]', '{"choices": [{"text": "hi"}]}', '{"choices": [{"message": "hello"}]}',
    '{"choices": "x", "role": "a", "content": ""}', '{"role": "a", "content": null, "tool_calls": []}', '{"z": 1, "b": 2, "a": 3, "m": [], "n": null}',
    '{"choices": [{"message": {"content": null}}], "x": 1}', '[[[[""]]]]', '[[[""]]]', '{"a": [], "b": {}}', '{"a": 0}',
    '{"role": "x", "content": 0, "tool_calls": 0}', ' {"k": 1} ', "{" + ", ".join(f'"k{i}": {i}' for i in range(15)) + "}",
]
# Where Spark's JSON parser and Python's differ (spark_sql.py's docstring): Python reads NaN as a number.
PAYLOAD_DIVERGENCES = {"NaN": {"kind": ("number", "non_json")}}
TRICKY_VALUES = ["true", "false", "0", "0.0", "1.0", "0.5", "4", '"yes"', '"' + "x" * 80 + '"', "null", '{"a":1}', "[1]", "1e-7", "0.0001", "0.00001",
                 "1e16", "123456789012345.0", "1234567890123456.0", "12345678901234567.0", "0.1234567890123456789", "1e400", "-2.5", "100000000",
                 "-0.001", "3.14159"]


def test_signature_normalisation_in_sql_equals_python(spark):
    from mlflow_eval_agent.traces import spark_sql as S
    from mlflow_eval_agent.traces.signatures import normalize_error_message, split_type_prefix

    df = spark.createDataFrame([(m,) for m in TRICKY_MESSAGES], "m string")
    rows = df.selectExpr("m", f"{S.normalized('m')} AS n", *S.split_type_prefix("m")).collect()
    got = [(r[1], (r[2], r[3])) for r in rows]
    assert got == [(normalize_error_message(m), split_type_prefix(m or "")) for m in TRICKY_MESSAGES]


def test_error_of_a_span_in_sql_equals_python(spark):
    from mlflow_eval_agent.traces import spark_sql as S
    from mlflow_eval_agent.traces.signatures import error_from_span

    cases = [("KeyError", "'x'", "KeyError: 'x'"), ('"TimeoutError"', '"timed out"', ""), ("", "", "ValueError: bad"), (None, None, "plain text"),
             ("RuntimeError", "", "RuntimeError: from status"), ("", "only message", ""), ('""', "x", "Err: y"), (None, None, None)]
    df = spark.createDataFrame(cases, "t string, m string, s string")
    has = S.event_is_error("t", "m")
    rows = df.selectExpr(*S.error_parts("t", "m", "s", has)).collect()
    expected = []
    for t, m, status in cases:
        attrs = {k: v for k, v in (("exception.type", t), ("exception.message", m)) if v is not None}
        info = error_from_span({"events": [{"name": "exception", "attributes": attrs}]}, status)
        expected.append((info.exception_type, info.message))
    assert [tuple(r) for r in rows] == expected


def test_payload_facts_in_sql_equal_python(spark):
    from pyspark.sql import functions as F

    from mlflow_eval_agent.traces import spark_sql as S
    from mlflow_eval_agent.traces.spans import Payload, is_empty_value, looks_like_json, shape_of

    spark.conf.set("spark.sql.variant.allowDuplicateKeys", "true")  # as the engine sets it
    raws = [*TRICKY_PAYLOADS, *PAYLOAD_DIVERGENCES, None]
    df = spark.createDataFrame([(r,) for r in raws], "r string").withColumn("pv", F.expr("try_parse_json(r)"))
    facts = S.payload_facts("r", "pv")
    rows = df.selectExpr("r", *[f"{c} AS {k}" for k, c in facts.items()], f"{S.looks_like_json('r')} AS lj").collect()
    for r in rows:
        raw = r["r"]
        if raw is None:
            expected = {"has_value": False, "empty": True, "kind": "null", "keys": []}
        else:
            payload = Payload.of(raw)
            kind, keys = shape_of(payload)
            expected = {"has_value": payload.value is not None, "empty": not payload.is_huge and is_empty_value(payload.value), "kind": kind,
                        "keys": list(keys), "lj": looks_like_json(raw)}
        got = {k: r[k] for k in expected}
        for field, (python, spark_value) in PAYLOAD_DIVERGENCES.get(raw, {}).items():
            assert (expected[field], got[field]) == (python, spark_value)  # the documented difference, nothing else
            expected[field] = spark_value
        assert got == expected, raw


def test_assessment_value_labels_in_sql_equal_python(spark):
    import json

    from pyspark.sql import functions as F

    from mlflow_eval_agent.traces import spark_sql as S
    from mlflow_eval_agent.traces.accumulators import _value_label

    df = spark.createDataFrame([(v,) for v in [*TRICKY_VALUES, "-0.0"]], "t string").withColumn("v", F.expr("parse_json(t)"))
    df.createOrReplaceTempView("tricky_values")
    keyed = f"SELECT t, {S.value_number('v')} AS n, {', '.join(S.value_keys('v'))} FROM tricky_values"
    labelled = spark.sql(S.with_value_label(keyed, ["t", "n"], "l"))
    got = {r["t"]: (r["l"], r["n"]) for r in labelled.collect()}
    for text in TRICKY_VALUES:
        value = json.loads(text)
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        assert got[text] == (_value_label(value), number), text
    assert got["-0.0"] == ("0.0", -0.0)  # documented: VARIANT keeps -0.0 as decimal 0 (Python labels it "-0.0")


def test_no_python_udf_in_the_engine():
    """The profile is JVM-side: no pyspark udf / pandas_udf / mapInPandas anywhere in the engine's modules."""
    from pathlib import Path

    import mlflow_eval_agent.traces as traces

    for name in ("spark_profile.py", "spark_sql.py"):
        text = (Path(traces.__file__).parent / name).read_text()
        assert not re.search(r"\b(?:F\.udf|udf\(|pandas_udf|mapInPandas|applyInPandas|\.rdd\b|localCheckpoint)", text), name


def _uc_settings(seeded_store: SeededStore, tmp_path):
    from mlflow_eval_agent.settings import resolve_settings

    # trace_location as an operator sets it (EVAL_AGENT_TRACE_LOCATION), resolved once by settings.py
    return resolve_settings({"experiment_id": seeded_store.support_id, "tracking_uri": seeded_store.uri, "volume_path": str(tmp_path)},
                            {"EVAL_AGENT_TRACE_LOCATION": LOCATION.name})


def test_the_agents_profile_tool_uses_spark_for_a_uc_location(spark, tables, seeded_store: SeededStore, sql_profile, tmp_path):
    """With the traces in UC tables and a SparkSession active, the agent's profile tool profiles with Spark."""
    from mlflow_eval_agent.store import open_session_store
    from mlflow_eval_agent.tools._base import ToolContext
    from mlflow_eval_agent.tools.profile import load_profile

    settings = _uc_settings(seeded_store, tmp_path)
    assert settings.trace_location == LOCATION.name
    profile = load_profile(ToolContext(settings, open_session_store(settings.volume_path, "uc-tool")), refresh=True)
    assert profile.source.path == "spark"
    assert numbers(profile) == as_uc_ids(numbers(sql_profile))


def test_the_offline_planner_uses_spark_for_a_uc_location(spark, tables, seeded_store: SeededStore, tmp_path, monkeypatch):
    """build_offline profiles a UC location with Spark (stopped right after it saved the profile)."""
    from mlflow_eval_agent.store import open_session_store
    from mlflow_eval_agent.suite import offline
    from mlflow_eval_agent.traces.profile_model import TraceProfile

    class Profiled(Exception):
        pass

    def stop(profile):
        raise Profiled

    monkeypatch.setattr(offline, "latency_budget_ms", stop)
    settings = _uc_settings(seeded_store, tmp_path)
    store = open_session_store(settings.volume_path, "uc-offline")
    with pytest.raises(Profiled):
        offline.build_offline(settings, store)
    saved = store.read_model(offline.PROFILE_FILE, TraceProfile)
    assert saved.source.path == "spark" and saved.trace_count == 200 and saved.hidden_failures.count == 15


# --- the warehouse engine: the same statements through the Statement Execution API (traces/warehouse.py) ----


@pytest.fixture(scope="module")
def warehouse(spark, tables):
    """A fake workspace whose SQL warehouse really runs each statement on this module's SparkSession, over
    the tables at the location's own names; 7 rows per result chunk, so multi-chunk results are read."""
    from tests.fakes.databricks_api import FakeDatabricks

    with FakeDatabricks(warehouses={"wh-1": "RUNNING"}, sql_spark=spark, statement_chunk_rows=7) as fake:
        yield fake


def _client(fake):
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=fake.url, token=fake.token)


def test_the_warehouse_engine_agrees_with_spark_and_sql(warehouse, profile, sql_profile, seeded_store: SeededStore, monkeypatch, capsys):
    """`analyze --engine spark --sql-warehouse-id` with no SparkSession here runs the same statements on the
    warehouse: the same profile as Spark (hash sample included) and as the sql engine, number for number."""
    from mlflow_eval_agent.cli import main
    from mlflow_eval_agent.traces import spark_profile as sp
    from mlflow_eval_agent.traces.profile_model import TraceProfile

    monkeypatch.setattr(sp, "active_spark", lambda: None)  # off-cluster, no Databricks Connect
    monkeypatch.setenv("DATABRICKS_HOST", warehouse.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", warehouse.token)
    monkeypatch.setenv("MLFLOW_TRACING_SQL_WAREHOUSE_ID", "")  # restored after the test: settings hand it to MLflow
    monkeypatch.delenv("MLFLOW_TRACING_SQL_WAREHOUSE_ID")
    warehouse.requests.clear()
    warehouse.statements_run.clear()
    code = main(["analyze", "--engine", "spark", "--trace-location", LOCATION.name, "--sql-warehouse-id", "wh-1",
                 "--tracking-uri", seeded_store.uri, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    got = TraceProfile.model_validate_json(out.out)
    assert got.source.path == "warehouse" and got.experiment_id == LOCATION.name
    assert got.sample_trace_ids == profile.sample_trace_ids
    spark_numbers, got_numbers = numbers(profile), numbers(got)
    assert sorted(k for k in spark_numbers if spark_numbers[k] != got_numbers.get(k)) == []
    assert got_numbers == as_uc_ids(numbers(sql_profile))
    chunks = [r for r in warehouse.requests if "/result/chunks/" in r.path]
    assert chunks and all(r.status == 200 for r in chunks)  # multi-chunk results were read chunk by chunk
    assert warehouse.unserved() == [] and all(r.authorized for r in warehouse.requests if r.path.startswith("/api/"))
    assert all(s.startswith(("SELECT", "WITH")) for s in warehouse.statements_run)  # only queries: the warehouse keeps no state


def test_engine_choice_with_a_warehouse():
    from mlflow_eval_agent.traces.source import InvalidQuery
    from mlflow_eval_agent.traces.spark_engine import choose_engine

    uc = "main.traces.support"
    assert choose_engine("warehouse", uc, spark=object(), sql_warehouse_id="wh") == "warehouse"
    assert choose_engine("spark", uc, spark=None, sql_warehouse_id="wh") == "warehouse"  # no Spark: the fallback
    assert choose_engine("spark", uc, spark=object(), sql_warehouse_id="wh") == "spark"
    assert choose_engine("auto", uc, spark=None, sql_warehouse_id="wh") == "warehouse"
    assert choose_engine("auto", "main.traces", spark=None, sql_warehouse_id="wh") == "auto"  # the legacy tables: MLflow's API
    with pytest.raises(InvalidQuery, match="--sql-warehouse-id"):
        choose_engine("warehouse", uc)
    with pytest.raises(InvalidQuery, match="--trace-location"):
        choose_engine("warehouse", None, sql_warehouse_id="wh")


def test_analyze_engine_spark_without_spark_or_warehouse_says_what_to_pass(tables, seeded_store: SeededStore, monkeypatch, capsys):
    from mlflow_eval_agent.cli import main
    from mlflow_eval_agent.traces import spark_profile as sp

    monkeypatch.setattr(sp, "active_spark", lambda: None)
    monkeypatch.delenv("MLFLOW_TRACING_SQL_WAREHOUSE_ID", raising=False)
    code = main(["analyze", "--engine", "spark", "--trace-location", LOCATION.name, "--tracking-uri", seeded_store.uri])
    err = capsys.readouterr().err
    assert code == 2 and "--sql-warehouse-id" in err and "Traceback" not in err


def test_warehouse_runner_polls_reads_every_chunk_and_types_values(warehouse):
    from mlflow_eval_agent.traces.warehouse import WarehouseRunner

    slept = []
    warehouse.statement_polls = 3
    try:
        runner = WarehouseRunner("wh-1", _client(warehouse), sleep=slept.append)
        stage = runner.stage("numbers", "SELECT id, id % 2 = 0 AS even, CAST(id AS DOUBLE) / 4 AS q, array(CAST(id AS STRING)) AS a FROM range(25)")
        rows = runner.rows(f"SELECT * FROM {stage} ORDER BY id")
    finally:
        warehouse.statement_polls = 0
    assert len(slept) == 3 and slept == sorted(slept)  # bounded back-off while PENDING / RUNNING
    assert [r["id"] for r in rows] == list(range(25))  # 25 rows in 4 chunks of 7
    assert rows[3] == {"id": 3, "even": False, "q": 0.75, "a": ["3"]}
    assert runner.statements == 1 and warehouse.statements_run[-1].startswith(f"WITH {stage} AS (")


@pytest.mark.parametrize("state, says", [("FAILED", "failed a profile statement"), ("CANCELED", "was canceled"), ("CLOSED", "was closed")])
def test_warehouse_statement_failure_states_are_one_sentence(warehouse, state, says):
    from mlflow_eval_agent.traces.warehouse import WarehouseError, WarehouseRunner

    warehouse.statement_states.append(state)
    with pytest.raises(WarehouseError, match=says) as raised:
        WarehouseRunner("wh-1", _client(warehouse)).rows("SELECT 1 AS x")
    assert str(raised.value).count(". ") == 0 and str(raised.value).endswith(".")


def test_warehouse_sql_errors_timeouts_and_unknown_warehouses(warehouse):
    from mlflow_eval_agent.traces.source import InvalidQuery
    from mlflow_eval_agent.traces.warehouse import WarehouseError, WarehouseRunner

    with pytest.raises(WarehouseError, match="failed a profile statement .*TABLE_OR_VIEW_NOT_FOUND"):
        WarehouseRunner("wh-1", _client(warehouse)).rows("SELECT * FROM spark_catalog.uc_test.no_such_table")
    warehouse.statement_polls = 1000
    try:
        with pytest.raises(WarehouseError, match="was canceled: use a larger warehouse"):
            WarehouseRunner("wh-1", _client(warehouse), timeout_s=0.0, sleep=lambda s: None).rows("SELECT 1 AS x")
    finally:
        warehouse.statement_polls = 0
    assert warehouse.calls("POST", "/api/2.0/sql/statements/") and warehouse.calls("POST", "/api/2.0/sql/statements/")[-1].path.endswith("/cancel")
    with pytest.raises(InvalidQuery, match="--sql-warehouse-id"):
        WarehouseRunner("wh-missing", _client(warehouse)).rows("SELECT 1 AS x")


def test_api_and_spark_engines_agree_number_for_number(profile, seeded_store: SeededStore):
    """The third pair: MLflow's API path on the same traces gives the spark engine's profile."""
    api = build_profile(seeded_store.uri, seeded_store.support_id, path="api")
    assert api.source.path == "api"
    expected, got = as_uc_ids(numbers(api)), numbers(profile)
    differing = sorted(k for k in expected if expected[k] != got.get(k))
    assert differing == [], {k: (expected[k], got.get(k)) for k in differing}
