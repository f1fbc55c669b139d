"""Unit tests of the configuration loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdev_hooks.config import load
from mdev_hooks.errors import HookError


def write(tmp_path: Path, text: str) -> dict[str, str]:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return {"MDEV_HOOKS_CONFIG": str(p)}


def test_defaults_when_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mdev_hooks.config.DEFAULT_PATH", str(tmp_path / "absent.toml"))
    cfg = load({})
    assert cfg.sysfs_root == "/sys" and cfg.lock_timeout == 30.0 and not cfg.dry_run


def test_values_and_int_seconds(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, 'sysfs_root = "/tmp/x"\nlock_timeout = 5\ndry_run = true\n'))
    assert (cfg.sysfs_root, cfg.lock_timeout, cfg.dry_run) == ("/tmp/x", 5.0, True)


@pytest.mark.parametrize(("text", "match"), [
    ('sysfs_rot = "/x"', "unknown key 'sysfs_rot'"),
    ("lock_timeout = 'x'", "must be a float"),
    ('sysfs_root = "relative"', "absolute path"),
    ("lock_timeout = -1", "between 0 and 3600"),
    ("dry_run = 1", "must be a bool"),
    ("this is = not toml [", "not valid TOML"),
])
def test_bad_files_are_one_clear_error(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(HookError, match=match):
        load(write(tmp_path, text))


def test_named_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(HookError, match="does not exist"):
        load({"MDEV_HOOKS_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("0", False), ("false", False)])
def test_dry_run_env_overrides_file(tmp_path: Path, value: str, expected: bool) -> None:
    env = write(tmp_path, "dry_run = %s\n" % ("false" if expected else "true"))
    env["MDEV_HOOKS_DRY_RUN"] = value
    assert load(env).dry_run is expected


def test_dry_run_env_garbage(tmp_path: Path) -> None:
    with pytest.raises(HookError, match="MDEV_HOOKS_DRY_RUN"):
        load({"MDEV_HOOKS_DRY_RUN": "maybe"})


def test_policy_globs_load_as_tuples(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, 'allowed_parents = ["0000:00:*", "mtty"]\nallowed_types = []\n'))
    assert (cfg.allowed_parents, cfg.allowed_types) == (("0000:00:*", "mtty"), ())
    assert load(write(tmp_path, "")).allowed_parents is None
