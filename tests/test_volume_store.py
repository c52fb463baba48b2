"""Sessions in a Unity Catalog Volume: Files API backend against a local fake, FUSE backend on a temp dir."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from mlflow_eval_agent.plan import TaskPlan
from mlflow_eval_agent.store import StoreError, open_session_store
from mlflow_eval_agent.store.volume import (
    FilesApiVolumeBackend,
    FuseVolumeBackend,
    RetryPolicy,
    open_volume_session,
    volume_root,
)
from tests.fakes.databricks_api import FakeDatabricks

VOLUME = "/Volumes/main/evals/agent"
FAST = RetryPolicy(attempts=4, first_delay=0.001, max_delay=0.002)
SESSION = f"{VOLUME}/sessions/run-1"


@pytest.fixture
def fake():
    with FakeDatabricks() as server:
        server.add_volume(VOLUME)
        yield server


def open_api(fake: FakeDatabricks, cache: Path, session_id: str = "run-1", volume_path: str = VOLUME, **kw):
    return open_volume_session(volume_path, session_id, workspace=fake.client(), cache_root=cache, retry=FAST, **kw)


PLAN = TaskPlan.model_validate(
    {"tasks": [{"id": "t1", "name": "Dataset from error traces", "type": "dataset", "details": "50 ERROR traces"}]}
)


def sample_plan() -> TaskPlan:
    return PLAN


def write_session(store) -> None:
    store.write_model("eval_tasks.json", sample_plan())
    store.write_json("state/analysis.json", {"traces": 120, "errors": 7})
    store.write_text("evaluation/suite/run_eval.py", "print('eval')\n")
    store.append_log("session 1 started")
    store.append_log("session 1 ended")
    store.sync()


# --- Files API --------------------------------------------------------------------------------
def test_round_trip_and_resume_on_another_machine(fake, tmp_path):
    first = open_api(fake, tmp_path / "machine-a")
    assert first.list() == [] and isinstance(first.backend, FilesApiVolumeBackend)
    assert not str(first.root).startswith("/Volumes")  # the agent works in a local folder
    write_session(first)

    assert fake.files[f"{SESSION}/state/analysis.json"] == (first.root / "state/analysis.json").read_bytes()
    assert fake.files[f"{SESSION}/run.log"] == b"session 1 started\nsession 1 ended\n"
    assert f"{SESSION}/evaluation/suite" in fake.dirs

    resumed = open_api(fake, tmp_path / "machine-b")
    assert resumed.root != first.root
    assert resumed.list() == first.list()
    for rel in first.list():
        assert resumed.path(rel).read_bytes() == first.path(rel).read_bytes()
    assert resumed.read_model("eval_tasks.json", TaskPlan) == sample_plan()


def test_overwrite_replaces_the_stored_file(fake, tmp_path):
    store = open_api(fake, tmp_path / "a")
    store.write_json("state/findings.json", {"version": 1})
    store.write_json("state/findings.json", {"version": 2})
    assert b'"version": 2' in fake.files[f"{SESSION}/state/findings.json"]
    puts = fake.calls("PUT", f"/api/2.0/fs/files{SESSION}/state/findings.json")
    assert len(puts) == 2 and all(r.query.get("overwrite") == "true" for r in puts)
    assert open_api(fake, tmp_path / "b").read_json("state/findings.json") == {"version": 2}


def test_missing_session_folder_is_a_new_session_and_nested_folders_are_created(fake, tmp_path):
    store = open_api(fake, tmp_path / "a", session_id="brand-new")
    assert store.list() == []
    store.write_text("evaluation/deep/er/file.txt", "x")
    assert fake.files[f"{VOLUME}/sessions/brand-new/evaluation/deep/er/file.txt"] == b"x"
    created = [r.path for r in fake.calls("PUT", "/api/2.0/fs/directories")]
    assert created == [f"/api/2.0/fs/directories{VOLUME}/sessions/brand-new/evaluation/deep/er"]


def test_missing_volume_is_a_clear_error(fake, tmp_path):
    with pytest.raises(StoreError, match=r"volume /Volumes/main/evals/nope does not exist.*CREATE VOLUME main\.evals\.nope"):
        open_api(fake, tmp_path, volume_path="/Volumes/main/evals/nope")


@pytest.mark.parametrize("bad", ["/Volumes/main", "/Volumes/main/evals", "/Volumes/a/../b/c"])
def test_a_path_that_is_not_a_volume_is_refused(bad):
    with pytest.raises(StoreError, match="not a Unity Catalog Volume path"):
        volume_root(bad)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_error_is_retried(fake, tmp_path, status):
    store = open_api(fake, tmp_path / "a")
    fake.fail_next("PUT", f"{SESSION}/state/a.json", status)
    store.write_json("state/a.json", {"ok": True})
    assert len(fake.calls("PUT", f"/api/2.0/fs/files{SESSION}/state/a.json")) == 2
    assert fake.files[f"{SESSION}/state/a.json"] == store.path("state/a.json").read_bytes()

    fake.fail_next("GET", f"{SESSION}/state/a.json", status)
    assert open_api(fake, tmp_path / "b").read_json("state/a.json") == {"ok": True}


def test_retries_are_bounded_and_then_reported(fake, tmp_path):
    store = open_api(fake, tmp_path / "a")
    fake.fail_next("PUT", f"{SESSION}/state/a.json", 500, times=100)
    with pytest.raises(StoreError, match=r"Could not upload .*state/a.json: InternalError"):
        store.write_json("state/a.json", {"ok": True})
    assert len(fake.calls("PUT", f"/api/2.0/fs/files{SESSION}/state/a.json")) == FAST.attempts


def test_rejected_credentials_are_reported_without_retrying(fake, tmp_path):
    from databricks.sdk import WorkspaceClient

    wrong = WorkspaceClient(host=fake.url, token="not-the-token")
    with pytest.raises(StoreError, match="rejected the credentials.*DATABRICKS_TOKEN"):
        open_volume_session(VOLUME, "run-1", workspace=wrong, cache_root=tmp_path, retry=FAST)
    assert len(fake.calls("HEAD")) == 1


def test_listing_follows_pages(fake, tmp_path):
    fake.page_size = 2
    store = open_api(fake, tmp_path / "a")
    for i in range(5):
        store.write_text(f"state/f{i}.json", str(i))
    assert len(open_api(fake, tmp_path / "b").list("state")) == 5
    assert any("page_token" in r.query for r in fake.calls("GET", "/api/2.0/fs/directories"))


def test_hidden_temporary_files_are_not_pulled(fake, tmp_path):
    fake.files[f"{SESSION}/state/.a.json.1234.tmp"] = b"half"
    fake.make_dirs(f"{SESSION}/state")
    fake.files[f"{SESSION}/state/a.json"] = b"{}"
    assert open_api(fake, tmp_path).list() == ["state/a.json"]


def test_default_path_uses_standard_credentials(fake, tmp_path, monkeypatch):
    """`open_session_store` with a /Volumes path and DATABRICKS_HOST/TOKEN: no injected client."""
    monkeypatch.setenv("DATABRICKS_HOST", fake.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    store = open_session_store(VOLUME, "run-1")
    store.write_text("state/x.json", "{}")
    assert fake.files[f"{SESSION}/state/x.json"] == b"{}"
    assert store.root.is_relative_to(tmp_path)


def test_no_credentials_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "missing.cfg"))
    with pytest.raises(StoreError, match="needs Databricks credentials.*DATABRICKS_HOST and DATABRICKS_TOKEN"):
        open_volume_session(VOLUME, "run-1", mount_root=tmp_path, cache_root=tmp_path)


# --- FUSE mount (Databricks compute) ------------------------------------------------------------
@pytest.fixture
def mount(tmp_path) -> Path:
    root = tmp_path / "mount"
    (root / VOLUME.lstrip("/")).mkdir(parents=True)
    return root


def open_fuse(mount: Path, cache: Path, session_id: str = "run-1"):
    return open_volume_session(VOLUME, session_id, mount_root=mount, cache_root=cache, retry=FAST)


def test_fuse_round_trip_whole_files_and_resume(mount, tmp_path):
    first = open_fuse(mount, tmp_path / "a")
    assert isinstance(first.backend, FuseVolumeBackend) and first.list() == []
    write_session(first)
    remote = mount / SESSION.lstrip("/")
    stored = sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file())
    assert stored == first.list()  # no temporary files left behind
    assert (remote / "run.log").read_text() == "session 1 started\nsession 1 ended\n"

    resumed = open_fuse(mount, tmp_path / "b")
    assert resumed.read_model("eval_tasks.json", TaskPlan) == sample_plan()
    assert [resumed.path(r).read_bytes() for r in resumed.list()] == [first.path(r).read_bytes() for r in first.list()]


def test_fuse_overwrite_and_a_mount_that_refuses_rename(mount, tmp_path, monkeypatch):
    store = open_fuse(mount, tmp_path / "a")
    store.write_json("state/a.json", {"v": 1})
    real_replace = os.replace

    def no_rename_on_mount(src, dst):
        if str(dst).startswith(str(mount)):
            raise OSError(95, "Operation not supported")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", no_rename_on_mount)
    store.write_json("state/a.json", {"v": 2})
    remote = mount / SESSION.lstrip("/") / "state"
    assert [p.name for p in remote.iterdir()] == ["a.json"]
    assert '"v": 2' in (remote / "a.json").read_text()


def test_fuse_missing_volume_is_a_clear_error(tmp_path):
    (tmp_path / "Volumes").mkdir()
    with pytest.raises(StoreError, match="does not exist.*CREATE VOLUME main.evals.agent"):
        open_fuse(tmp_path, tmp_path / "cache")


def test_fuse_transient_io_error_is_retried(mount, tmp_path, monkeypatch):
    store = open_fuse(mount, tmp_path / "a")
    from mlflow_eval_agent.store import volume

    calls = []
    real = volume._write_whole

    def flaky(target, data):
        calls.append(target)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")
        return real(target, data)

    monkeypatch.setattr(volume, "_write_whole", flaky)
    store.write_text("state/a.json", "{}")
    assert len(calls) == 2 and (mount / SESSION.lstrip("/") / "state/a.json").read_text() == "{}"


# --- a volume without READ / WRITE: one sentence with the grants, never a PermissionError traceback --
GRANTS = r"permission denied\. Ask for READ VOLUME and WRITE VOLUME on main\.evals\.agent \(and USE CATALOG on main, USE SCHEMA on main\.evals\)"


def test_fuse_volume_without_read_is_one_sentence(mount, tmp_path, monkeypatch):
    from pathlib import Path as RealPath

    real_is_dir = RealPath.is_dir

    def refused(self):
        if str(self).startswith(str(mount / VOLUME.lstrip("/"))):
            raise PermissionError(13, "Permission denied", str(self))  # what the mount answers without READ VOLUME
        return real_is_dir(self)

    monkeypatch.setattr(RealPath, "is_dir", refused)
    with pytest.raises(StoreError, match=GRANTS) as err:
        open_fuse(mount, tmp_path / "a")
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)


def test_fuse_file_without_read_or_write_is_one_sentence(mount, tmp_path, monkeypatch):
    store = open_fuse(mount, tmp_path / "a")
    write_session(store)
    from mlflow_eval_agent.store import volume

    def no_write(target, data):
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(volume, "_write_whole", no_write)
    with pytest.raises(StoreError, match=r"Could not write .*state/a\.json: " + GRANTS):
        store.write_text("state/a.json", "{}")
    monkeypatch.undo()

    from pathlib import Path as RealPath

    def no_read(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(RealPath, "read_bytes", no_read)
    with pytest.raises(StoreError, match=r"Could not read .*: " + GRANTS):
        open_fuse(mount, tmp_path / "b")


def test_files_api_permission_denied_is_one_sentence(fake, tmp_path):
    fake.fail_next("GET", VOLUME, status=403)
    with pytest.raises(StoreError, match=r"Could not list /Volumes/main/evals/agent/sessions/run-1 \(PermissionDenied: Injected failure\): " + GRANTS) as err:
        open_api(fake, tmp_path / "a")
    assert "\n" not in str(err.value) and "Config:" not in str(err.value)
