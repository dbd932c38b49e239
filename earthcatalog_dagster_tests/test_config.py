"""Settings: roots from the environment and roots from flags follow one rule.

A root given as a flag (``with_overrides``) counts as configured exactly like the same
root set in the environment: the items are read from their real bucket, and a remote
warehouse gets the shared catalog beside it.
"""

from __future__ import annotations

import os

import pytest

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import RootNotWritable, Settings

OPERATORS = "s3://its-live-data/test-space/stac/catalog"


def _env(home, **roots: str) -> dict[str, str]:
    return {"EARTHCATALOG_HOME": str(home), **roots}


@pytest.mark.parametrize("root", ["warehouse", "staging", "delta_prefix"])
@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_root_given_as_a_flag_reads_items_from_their_bucket(tmp_path, root, where) -> None:
    value = str(tmp_path / "elsewhere") if where == "local" else f"{OPERATORS}/{root}"
    from_env = Settings.from_env(_env(tmp_path / "home", **{root.upper(): value}))
    from_flag = Settings.from_env(_env(tmp_path / "home")).with_overrides(**{root: value})

    assert from_env.source_root is None
    assert from_flag.source_root is None  # today: <home>/source, read silently
    assert from_flag == from_env


def test_source_root_given_wins_over_the_rule(tmp_path) -> None:
    mirror = str(tmp_path / "mirror")
    by_env = Settings.from_env(_env(tmp_path / "home", SOURCE_ROOT=mirror))
    assert by_env.with_overrides(warehouse=str(tmp_path / "wh")).source_root == mirror
    by_flag = Settings.from_env(_env(tmp_path / "home")).with_overrides(
        warehouse=str(tmp_path / "wh"), source_root=mirror
    )
    assert by_flag.source_root == mirror


def test_the_embedded_roots_given_explicitly_stay_embedded(tmp_path) -> None:
    """A resource or flag that names the embedded folders themselves is still embedded."""
    base = Settings.embedded(tmp_path / "home")
    same = base.with_overrides(warehouse=base.warehouse, delta_prefix=base.delta_prefix)
    assert same.source_root == str(tmp_path / "home" / "source")
    assert same.catalog_remote is None


def test_the_shared_catalog_lives_beside_a_remote_warehouse(tmp_path) -> None:
    warehouse = f"{OPERATORS}/warehouse"
    expected = f"{OPERATORS}/earthcatalog.db"
    assert layout.catalog_beside(warehouse) == expected
    assert layout.catalog_beside(warehouse + "/") == expected

    from_env = Settings.from_env(_env(tmp_path / "home", WAREHOUSE=warehouse))
    assert from_env.catalog_remote == expected
    assert from_env.catalog == str(tmp_path / "home" / "earthcatalog.db")  # the working copy
    from_flag = Settings.from_env(_env(tmp_path / "home")).with_overrides(warehouse=warehouse)
    assert from_flag.catalog_remote == expected

    # Another warehouse given as a flag moves the derived catalog with it ...
    moved = from_env.with_overrides(warehouse="s3://other-bucket/cat/warehouse")
    assert moved.catalog_remote == "s3://other-bucket/cat/earthcatalog.db"
    # ... but a catalog given explicitly stays where it was given.
    explicit = Settings.from_env(
        _env(tmp_path / "home", WAREHOUSE=warehouse, CATALOG_REMOTE="s3://b/mine.db")
    )
    assert explicit.catalog_remote == "s3://b/mine.db"
    assert explicit.with_overrides(warehouse="s3://c/w").catalog_remote == "s3://b/mine.db"
    assert (
        from_flag.with_overrides(catalog_remote="s3://b/flag.db").catalog_remote == "s3://b/flag.db"
    )


def test_a_local_warehouse_has_no_shared_catalog(tmp_path) -> None:
    settings = Settings.from_env(_env(tmp_path / "home", WAREHOUSE=str(tmp_path / "wh")))
    assert settings.catalog_remote is None
    assert layout.catalog_beside("s3://bucket") == "s3://bucket/earthcatalog.db"
    assert layout.catalog_beside("/data/catalog/warehouse") == "/data/catalog/earthcatalog.db"


def test_hash_index_follows_the_warehouse_unless_given(tmp_path) -> None:
    base = Settings.from_env(_env(tmp_path / "home"))
    assert base.with_overrides(warehouse="s3://b/w").warehouse_hash == "s3://b/w_id_hashes.parquet"
    given = Settings.from_env(_env(tmp_path / "home", WAREHOUSE_HASH="s3://b/h.parquet"))
    assert given.with_overrides(warehouse="s3://b/w").warehouse_hash == "s3://b/h.parquet"


def test_check_writable_names_a_root_under_a_file(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings = Settings.embedded(tmp_path / "home").with_overrides(
        warehouse=str(blocker / "warehouse")
    )
    with pytest.raises(RootNotWritable) as err:
        settings.check_writable("staging", "warehouse")
    message = str(err.value)
    assert str(blocker / "warehouse") in message and "--warehouse" in message
    assert f"{blocker} is a file" in message
    assert blocker.read_text() == "not a folder"
    assert not (tmp_path / "home").exists()  # the check creates nothing
    Settings.embedded(tmp_path / "home").check_writable("warehouse", "catalog", "staging")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_writable_names_a_read_only_folder(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    try:
        with pytest.raises(RootNotWritable, match="no write permission"):
            Settings.embedded(home).check_writable("warehouse")
    finally:
        home.chmod(0o755)


def test_unknown_settings_are_refused(tmp_path) -> None:
    with pytest.raises(TypeError, match="warehous"):
        Settings.embedded(tmp_path).with_overrides(warehous="x")
