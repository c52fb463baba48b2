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
               .config("spark.default.parallelism", "1").config("spark.driver.memory", "1g")
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
