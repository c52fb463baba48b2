"""Where the spark engine's SQL runs: one small interface over a SparkSession or a SQL warehouse.

spark_profile.py writes the whole profile as SQL statements (spark_sql.py's expressions inside) and
hands them to a `SqlRunner`:
- `rows(statement)`: run a SELECT, return its (small) result as rows read by column name;
- `stage(name, statement, persist=...)`: name an intermediate relation that later statements read by
  that name. On Spark it is a temp view over the DataFrame, persisted (memory, spilling to disk) when
  asked, exactly as the engine kept its DataFrames; on a warehouse (warehouse.py), which keeps no state
  between statements, it is a common table expression put in front of every statement that reads it;
- `materialise(name)` / `release(name)`: build a persisted stage now / free it (no-ops on a warehouse);
- `close()`: release everything.

pyspark is imported only inside SparkRunner's methods.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Protocol

DUPLICATE_KEYS_CONF = "spark.sql.variant.allowDuplicateKeys"
_IDS = itertools.count(1)


class SqlRunner(Protocol):
    engine: str

    def rows(self, statement: str) -> list[Mapping[str, Any]]: ...

    def stage(self, name: str, statement: str, persist: bool = True) -> str: ...

    def materialise(self, name: str) -> None: ...

    def release(self, name: str) -> None: ...

    def close(self) -> None: ...


def unique_name(name: str) -> str:
    """A relation name no other profile in this process uses (two profiles may share one SparkSession)."""
    return f"_eap{next(_IDS)}_{name}"


class SparkRunner:
    """The statements on a SparkSession: `spark.sql(...)`; stages are temp views, persisted when asked.
    While open, `spark.sql.variant.allowDuplicateKeys` is true (Python's json keeps the last of
    duplicate keys; Spark refuses them by default); close() restores it."""

    engine = "spark"

    def __init__(self, spark: Any):
        self.spark = spark
        self._frames: dict[str, Any] = {}
        self._views: list[str] = []
        conf = spark.conf
        self._before = conf.get(DUPLICATE_KEYS_CONF, None)
        conf.set(DUPLICATE_KEYS_CONF, "true")

    def rows(self, statement: str) -> list[Any]:
        return self.spark.sql(statement).collect()

    def stage(self, name: str, statement: str, persist: bool = True) -> str:
        view = unique_name(name)
        df = self.spark.sql(statement)
        if persist:
            from pyspark import StorageLevel

            df = df.persist(StorageLevel.MEMORY_AND_DISK)
            self._frames[view] = df
        df.createOrReplaceTempView(view)
        self._views.append(view)
        return view

    def materialise(self, name: str) -> None:
        self._frames[name].count()

    def release(self, name: str) -> None:
        """Free a persisted stage's data; the view stays (a later statement would recompute it)."""
        df = self._frames.pop(name, None)
        if df is not None:
            df.unpersist()

    def close(self) -> None:
        try:
            conf = self.spark.conf
            if self._before is None:
                conf.unset(DUPLICATE_KEYS_CONF)
            else:
                conf.set(DUPLICATE_KEYS_CONF, self._before)
            for df in self._frames.values():
                df.unpersist()
            catalog = self.spark.catalog
            for view in self._views:
                catalog.dropTempView(view)
        except Exception:  # the session died (the error being raised says why): nothing left to release
            pass
        self._frames.clear()
        self._views.clear()
