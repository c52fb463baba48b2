"""The offline path follows the agent path's rules on resume: a corrupt plan is set aside, reported and
restored (nothing completed is redone), and hand edits to evaluation/ are never overwritten silently."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from mlflow_eval_agent.plan import PLAN_BACKUP, PLAN_FILE, TaskPlan
from mlflow_eval_agent.runner import run_autonomous
from mlflow_eval_agent.settings import resolve_settings
from mlflow_eval_agent.store import open_session_store
from mlflow_eval_agent.suite.user_edits import HASH_FILE
from tests.suite_helpers import local_store, seed_experiment

pytestmark = pytest.mark.slow


def _run(settings) -> tuple[int, str]:
    out = io.StringIO()
    code = run_autonomous(settings, Console(file=out, width=200))
    return code, out.getvalue()


def test_offline_resume_keeps_completed_work_and_hand_edits(tmp_path) -> None:
    with local_store(tmp_path) as uri:
        experiment_id, _ = seed_experiment("support", n=20)
        settings = resolve_settings({"experiment_id": experiment_id, "tracking_uri": uri, "volume_path": str(tmp_path / "v"),
                                     "offline": True, "session_id": "off"}, env={})
        code, _ = _run(settings)
        assert code == 0
        store = open_session_store(settings.volume_path, "off")
        assert store.read_json(HASH_FILE)  # recorded right after the render, from the files written
        scorers = store.path("evaluation/scorers.py")
        rendered = scorers.read_text()

        # 1. A truncated plan: set aside, reported in one line, restored; nothing is redone.
        store.path(PLAN_FILE).write_text(store.path(PLAN_FILE).read_text()[:50])
        code, output = _run(settings)
        assert code == 0 and "Traceback" not in output
        assert re.search(r"eval_tasks\.json was unreadable .* kept aside as eval_tasks\.json\.corrupt-\S+\. Restored the last good plan", output), output
        assert "nothing is redone" in output
        assert any(p.startswith(f"{PLAN_FILE}.corrupt-") for p in store.list())
        assert store.read_model(PLAN_FILE, TaskPlan).done

        # 2. A hand-edited scorers.py survives a rebuild of the session (plan and its copy gone).
        edited = rendered + "\n# my threshold, hand-tuned\n"
        scorers.write_text(edited)
        store.path(PLAN_FILE).unlink()
        store.path(PLAN_BACKUP).unlink()
        code, output = _run(settings)
        assert code == 0, output
        assert scorers.read_text() == edited  # kept
        assert store.path("evaluation/scorers.py.new").read_text().startswith(rendered[:200])  # the new render beside it
        assert "Kept your edits to evaluation/scorers.py" in output and output.count("Kept your edits") == 1
