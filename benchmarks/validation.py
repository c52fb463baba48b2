"""Validation time of a code-only suite: a cold child per validation (what every validation paid
before) against the warm child (warm_child.py: MLflow imported once, a fresh fork per run).

    uv run python -m benchmarks.validation [--traces 40] [--repeats 3]

The demo agent writes the traces, the no-model planner builds a suite on them (its dataset: up to 40
traces), then the same suite is validated `--repeats` times cold and warm, alternating, on the same
store. The first warm validation also starts the warm child, so it is printed apart. Prints seconds
per validation and the median ratio cold / warm.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="validation-bench-"))
    uri = f"sqlite:///{folder / 'mlflow.db'}"

    import mlflow

    from mlflow_eval_agent.demo.agent import http_chat
    from mlflow_eval_agent.demo.chat_server import FakeChatServer
    from mlflow_eval_agent.demo.model import support_model
    from mlflow_eval_agent.demo.seed import seed_demo
    from mlflow_eval_agent.settings import resolve_settings
    from mlflow_eval_agent.store import open_session_store
    from mlflow_eval_agent.suite.offline import build_offline
    from mlflow_eval_agent.suite.spec import SPEC_FILE, SuiteSpec
    from mlflow_eval_agent.suite.validate import validate_suite
    from mlflow_eval_agent.warm_child import close_all

    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.create_experiment("validation-bench")
    with FakeChatServer(support_model) as server:
        seed_demo(experiment_id, http_chat(server.base_url), n=args.traces)
    settings = resolve_settings({"experiment_id": experiment_id, "tracking_uri": uri, "volume_path": str(folder / "sessions"), "offline": True}, env={})
    store = open_session_store(settings.volume_path, "bench")
    build_offline(settings, store)
    spec = store.read_model(SPEC_FILE, SuiteSpec)
    records = len(spec.dataset.records) if spec.dataset else 0
    print(f"suite: {len(spec.scorers)} scorers ({sum(not s.needs_judge for s in spec.scorers)} code), {records} traces; judges skipped")

    child_seconds: list[tuple[bool, float]] = []

    def once(warm: bool) -> float:
        started = time.monotonic()
        report = validate_suite(spec, store, uri, skip_judges="benchmark: no judge model", warm=warm)
        if not report.latest.ok:
            raise SystemExit(f"validation failed: {report.latest.error}")
        child_seconds.append((warm, report.latest.seconds))
        return time.monotonic() - started

    start_warm = once(True)
    cold, warm = [], []
    for _ in range(args.repeats):
        cold.append(once(False))
        warm.append(once(True))
    close_all()
    print(f"{'validation':<34} {'seconds':>8}")
    print(f"{'warm, first (starts the child)':<34} {start_warm:>8.1f}")
    for i, (c, w) in enumerate(zip(cold, warm), 1):
        print(f"{'cold #' + str(i):<34} {c:>8.1f}")
        print(f"{'warm #' + str(i):<34} {w:>8.1f}")
    print("of which run_eval.py in the child: " + ", ".join(f"{'warm' if w else 'cold'} {s:.1f} s" for w, s in child_seconds))
    print(f"median cold {statistics.median(cold):.1f} s, warm {statistics.median(warm):.1f} s: "
          f"warm is {statistics.median(cold) / statistics.median(warm):.1f}x faster")


if __name__ == "__main__":
    main()
