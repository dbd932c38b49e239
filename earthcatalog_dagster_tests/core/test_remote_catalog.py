"""``catalog.db`` on S3 (moto over HTTP): lock, download, conditional upload, release."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import lock, remote_catalog, storage
from earthcatalog_dagster.core.remote_catalog import CatalogConflict, catalog_session
from earthcatalog_dagster_tests.core.fault_proxy import fault_proxy
from earthcatalog_dagster_tests.core.moto_s3 import KEY_ID, SECRET
from earthcatalog_dagster_tests.s3_fixtures import point_env_at


def _namespaces(path: str) -> set[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT DISTINCT namespace FROM iceberg_namespace_properties")
        return {row[0] for row in rows}


def _add_namespace(path: str, warehouse: str, name: str) -> None:
    iceberg.open_catalog(path, warehouse).create_namespace(name)


def _remote_namespaces(remote: str, tmp_path) -> set[str]:
    copy = tmp_path / "inspect.db"
    copy.write_bytes(storage.read_bytes(remote))
    return _namespaces(str(copy))


def test_first_commit_creates_the_remote_then_round_trips(s3_home, tmp_path) -> None:
    remote, warehouse = s3_home.catalog_remote, s3_home.warehouse
    local_a, local_b = str(tmp_path / "a" / "catalog.db"), str(tmp_path / "b" / "catalog.db")
    assert not storage.exists(remote)

    with catalog_session(local_a, remote) as session:
        assert session.e_tag is None and not os.path.exists(local_a)  # none yet: fresh
        assert storage.exists(layout.catalog_lock(remote))  # the lock is beside the remote
        assert remote_catalog.is_held(local_a)
        _add_namespace(local_a, warehouse, "first")
    assert session.uploads == 1
    assert not storage.exists(layout.catalog_lock(remote))
    assert not remote_catalog.is_held(local_a)
    assert "first" in _remote_namespaces(remote, tmp_path)

    # Another machine (another local path) starts from the uploaded copy, adds to it.
    with catalog_session(local_b, remote) as session:
        assert session.e_tag is not None
        assert "first" in _namespaces(local_b)
        _add_namespace(local_b, warehouse, "second")
    assert {"first", "second"} <= _remote_namespaces(remote, tmp_path)

    # Nothing changed: nothing uploaded (the ETag stays).
    before = storage.read_with_etag(remote)[1]
    with catalog_session(local_a, remote) as session:
        assert {"first", "second"} <= _namespaces(local_a)  # downloaded over the stale copy
        iceberg.load_table(iceberg.open_catalog(local_a, warehouse))
    assert session.uploads == 0
    assert storage.read_with_etag(remote)[1] == before


def test_a_failed_block_uploads_nothing_and_skip_upload_keeps_the_remote(s3_home, tmp_path) -> None:
    remote, warehouse = s3_home.catalog_remote, s3_home.warehouse
    local = str(tmp_path / "catalog.db")
    with catalog_session(local, remote):
        _add_namespace(local, warehouse, "base")
    etag = storage.read_with_etag(remote)[1]

    with pytest.raises(RuntimeError, match="boom"), catalog_session(local, remote):
        _add_namespace(local, warehouse, "half_done")
        raise RuntimeError("boom")
    assert storage.read_with_etag(remote)[1] == etag
    assert not storage.exists(layout.catalog_lock(remote))

    with catalog_session(local, remote, skip_upload=True) as session:
        assert "half_done" not in _namespaces(local)  # a new session starts from the remote
        _add_namespace(local, warehouse, "not_uploaded")
    assert session.uploads == 0 and "not_uploaded" in _namespaces(local)
    assert storage.read_with_etag(remote)[1] == etag


def test_upload_refused_when_the_remote_changed_and_nothing_is_lost(s3_home, tmp_path) -> None:
    remote, warehouse = s3_home.catalog_remote, s3_home.warehouse
    mine, theirs = str(tmp_path / "mine.db"), str(tmp_path / "theirs.db")
    with catalog_session(mine, remote):
        _add_namespace(mine, warehouse, "base")

    # Two writers without the lock (--no-lock): they both start from the same version.
    with pytest.raises(CatalogConflict) as err:  # noqa: SIM117 - the order is the point
        with catalog_session(mine, remote, use_lock=False):
            _add_namespace(mine, warehouse, "ours")
            with catalog_session(theirs, remote, use_lock=False):
                _add_namespace(theirs, warehouse, "theirs")
            # theirs is uploaded first; our upload must not overwrite it.
    message = str(err.value)
    assert remote in message and err.value.kept in message
    assert KEY_ID not in message and SECRET not in message
    assert _remote_namespaces(remote, tmp_path) >= {"base", "theirs"}
    assert "ours" not in _remote_namespaces(remote, tmp_path)
    # Ours is kept twice over: the working copy and the named copy.
    assert "ours" in _namespaces(mine) and "ours" in _namespaces(err.value.kept)

    # The rerun redoes the commit on top of theirs: both survive.
    with catalog_session(mine, remote):
        _add_namespace(mine, warehouse, "ours")
    assert _remote_namespaces(remote, tmp_path) >= {"base", "theirs", "ours"}


def test_upload_when_someone_created_the_remote_meanwhile_is_refused(s3_home, tmp_path) -> None:
    remote, warehouse = s3_home.catalog_remote, s3_home.warehouse
    local = str(tmp_path / "catalog.db")
    with pytest.raises(CatalogConflict), catalog_session(local, remote, use_lock=False):
        _add_namespace(local, warehouse, "ours")
        storage.write_bytes(remote, b"someone else's catalog")
    assert storage.read_bytes(remote) == b"someone else's catalog"


def test_409_conflict_on_upload_is_retried(s3_server, s3_home, tmp_path, monkeypatch) -> None:
    remote, warehouse = s3_home.catalog_remote, s3_home.warehouse
    key_path = "/" + remote.removeprefix("s3://")

    def fault(method: str, path: str, n: int) -> str | None:
        return "409" if method == "PUT" and path == key_path and n < 2 else None

    local = str(tmp_path / "catalog.db")
    with fault_proxy(s3_server.endpoint, fault) as proxy:
        point_env_at(monkeypatch, s3_server.env(proxy.endpoint))
        with catalog_session(local, remote) as session:
            _add_namespace(local, warehouse, "after_conflicts")
    assert proxy.injected["409"] == 2
    assert session.uploads == 1
    assert "after_conflicts" in _remote_namespaces(remote, tmp_path)


def test_stale_lock_beside_the_remote_is_overridden(s3_home, tmp_path, caplog) -> None:
    remote = s3_home.catalog_remote
    lock_uri = layout.catalog_lock(remote)
    crashed = lock.LockInfo(
        "crashed-runner",
        "gone-host",
        4242,
        (datetime.now(UTC) - timedelta(hours=7)).isoformat(),
        6.0,
        "old",
    )
    storage.write_bytes(lock_uri, crashed.to_json())
    local = str(tmp_path / "catalog.db")
    with catalog_session(local, remote, lock_timeout=1):
        body = json.loads(storage.read_bytes(lock_uri))
        assert body["owner"] != "crashed-runner"
        assert {"owner", "hostname", "pid", "acquired", "ttl_hours"} <= set(body)
    assert "overriding stale lock" in caplog.text and "crashed-runner" in caplog.text
    assert not storage.exists(lock_uri)


def test_live_lock_of_someone_else_waits_then_fails_naming_the_holder(s3_home, tmp_path) -> None:
    remote = s3_home.catalog_remote
    lock_uri = layout.catalog_lock(remote)
    holder = lock.LockInfo(
        "runner-7", "other-host", 99, datetime.now(UTC).isoformat(), 6.0, "theirs"
    )
    storage.write_bytes(lock_uri, holder.to_json())
    with pytest.raises(lock.LockHeld, match="held by runner-7 on other-host") as err:  # noqa: SIM117
        with catalog_session(str(tmp_path / "c.db"), remote, lock_timeout=0.3, poll=0.05):
            pytest.fail("entered without the lock")
    assert "expires at" in str(err.value)
    assert json.loads(storage.read_bytes(lock_uri))["owner"] == "runner-7"  # left alone
    assert not storage.exists(remote)

    # --no-lock goes ahead (single-operator runs).
    with catalog_session(str(tmp_path / "c.db"), remote, use_lock=False) as session:
        _add_namespace(session.local, s3_home.warehouse, "no_lock")
    assert "no_lock" in _remote_namespaces(remote, tmp_path)


def test_read_copy_follows_the_remote(s3_home, tmp_path) -> None:
    remote, warehouse = s3_home.catalog_remote, s3_home.warehouse
    empty = remote_catalog.read_copy(remote)
    assert not os.path.exists(empty)
    local = str(tmp_path / "catalog.db")
    with catalog_session(local, remote):
        _add_namespace(local, warehouse, "v1")
    copy = remote_catalog.read_copy(remote)
    assert copy != local and "v1" in _namespaces(copy)
    with catalog_session(local, remote):
        _add_namespace(local, warehouse, "v2")
    assert "v2" in _namespaces(remote_catalog.read_copy(remote))


def test_without_a_remote_only_the_local_lock(tmp_path) -> None:
    local = str(tmp_path / "catalog.db")
    with catalog_session(local) as session:
        assert storage.exists(layout.catalog_lock(local))
        iceberg.open_catalog(local, str(tmp_path / "warehouse")).create_namespace("x")
    assert session.uploads == 0 and not storage.exists(layout.catalog_lock(local))
    assert "x" in _namespaces(local)


def test_a_local_remote_path_works_the_same(tmp_path) -> None:
    remote = str(tmp_path / "shared" / "earthcatalog.db")
    warehouse = str(tmp_path / "warehouse")
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    with catalog_session(a, remote):
        _add_namespace(a, warehouse, "a")
    with pytest.raises(CatalogConflict), catalog_session(a, remote, use_lock=False):
        _add_namespace(a, warehouse, "a2")
        with catalog_session(b, remote, use_lock=False):
            _add_namespace(b, warehouse, "b")
    assert {"a", "b"} <= _namespaces(remote) and "a2" not in _namespaces(remote)


# --- unreadable catalogs --------------------------------------------------------------------


def _good_catalog(path: str, warehouse: str) -> bytes:
    _add_namespace(path, warehouse, "ok")
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "header-only"])
def test_an_unreadable_catalog_is_named_with_what_to_do(tmp_path, damage) -> None:
    warehouse = str(tmp_path / "warehouse")
    good = _good_catalog(str(tmp_path / "good.db"), warehouse)
    body = {
        "garbage": os.urandom(4096),
        "truncated": good[: len(good) // 2],
        "header-only": good[:100],
    }[damage]
    path = tmp_path / "catalog.db"
    path.write_bytes(body)

    with pytest.raises(remote_catalog.CatalogUnreadable) as err:
        iceberg.open_catalog(str(path), warehouse)
    message = str(err.value)
    assert message.startswith(f"{path} is not a readable SQLite Iceberg catalog (")
    assert "restore it from its remote copy" in message and "move it aside" in message
    assert path.read_bytes() == body  # not "repaired", not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.db", "good.db"]


def test_check_catalog_file_accepts_missing_empty_and_good_files(tmp_path) -> None:
    remote_catalog.check_catalog_file(str(tmp_path / "missing.db"))
    (tmp_path / "empty.db").write_bytes(b"")
    remote_catalog.check_catalog_file(str(tmp_path / "empty.db"))
    _good_catalog(str(tmp_path / "good.db"), str(tmp_path / "warehouse"))
    remote_catalog.check_catalog_file(str(tmp_path / "good.db"))
    assert not (tmp_path / "missing.db").exists()


def test_a_corrupt_remote_catalog_is_named_by_its_uri(tmp_path) -> None:
    remote = str(tmp_path / "shared" / "earthcatalog.db")
    storage.write_bytes(remote, b"<html>502 Bad Gateway</html>" * 50)
    with pytest.raises(remote_catalog.CatalogUnreadable, match=r"the shared catalog .*shared"):
        remote_catalog.read_copy(remote)
    local = str(tmp_path / "work.db")
    with pytest.raises(remote_catalog.CatalogUnreadable) as err, catalog_session(local, remote):
        raise AssertionError("the block must not run on a corrupt catalog")
    assert str(err.value).startswith(f"the shared catalog {remote} is not a readable")
    assert not storage.exists(layout.catalog_lock(remote))  # the lock was released


def test_read_copy_of_a_missing_remote_can_refuse(tmp_path) -> None:
    remote = str(tmp_path / "shared" / "earthcatalog.db")
    with pytest.raises(FileNotFoundError, match=f"no catalog at {remote}"):
        remote_catalog.read_copy(remote, missing_ok=False)
    assert not os.path.exists(remote_catalog.read_copy(remote))
