"""One source for the configuration's defaults: `config.Config`'s fields. The commented config file (share/config.toml:
the .deb's conffile and what `mdev-hooks install` writes), README's table and the man page (rendered from that file)
are checked against them here, line by line.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from support.common import REPO

from mdev_hooks import config
from mdev_hooks.admin import manpage
from mdev_hooks.admin.cli import build_parser
from mdev_hooks.admin.install_cmd import DEFAULT_CONFIG_SOURCE, default_config_text
from mdev_hooks.config import Config, load

KEYS = [f.name for f in dataclasses.fields(Config) if f.name != "path"]
DEFAULTS = Config()
# `# key = value`, `# [table]` (a commented setting: one space after `#`, a key, ` = `)
SETTING = re.compile(r"# (?:([a-z_]+) = (.*)|\[([a-z_]+)\])")


def commented_settings(text: str) -> list[tuple[int, str, str]]:
    """(line number, key, the line uncommented) of each commented setting; a `[table]` line is its key."""
    found = []
    for number, line in enumerate(text.split("\n"), 1):
        m = SETTING.fullmatch(line)
        if m:
            found.append((number, m.group(1) or m.group(3), line[2:]))
    return found


def is_example(key: str) -> bool:
    """A key that is absent (None) or empty by default: its commented line is an example, not the default."""
    return getattr(DEFAULTS, key) in (None, ())


def check_line(key: str, line: str, where: str, tmp_path: Path) -> str | None:
    """Why one uncommented `key = value` line differs from Config()'s default (None: it is the default)."""
    cfg_file = tmp_path / "one-line.toml"
    cfg_file.write_text(line + "\n")
    value = getattr(load({"MDEV_HOOKS_CONFIG": str(cfg_file)}), key)  # also proves the line is a valid setting
    default = getattr(DEFAULTS, key)
    if is_example(key) or (value == default and type(value) is type(default)):
        return None
    return f"{where}: `# {line}` says the default is {value!r}, but Config().{key} is {default!r}"


def differences(text: str, tmp_path: Path, name: str = "share/config.toml") -> list[str]:
    """Every way the commented config `text` differs from Config(): a wrong default, a key twice, a key missing."""
    settings = commented_settings(text)
    found = [why for number, key, line in settings
             if (why := check_line(key, line, f"{name}:{number}", tmp_path))]
    seen = [key for _, key, _ in settings]
    found += [f"{name}: `{key}` is commented {seen.count(key)} times" for key in KEYS if seen.count(key) > 1]
    found += [f"{name}: no commented line for Config().{key} = {getattr(DEFAULTS, key)!r}" for key in KEYS
              if key not in seen]
    found += [f"{name}: `{key}` is not a field of Config" for key in seen if key not in KEYS]
    return found


def test_every_commented_default_in_the_shipped_config_is_config_default(tmp_path: Path) -> None:
    assert differences(default_config_text(), tmp_path) == []


def test_the_shipped_config_as_shipped_is_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(default_config_text())
    assert load({"MDEV_HOOKS_CONFIG": str(tmp_path / "c.toml")}) == Config(path=str(tmp_path / "c.toml"))


@pytest.mark.parametrize(("edit", "expected"), [
    (("# lock_timeout = 30.0", "# lock_timeout = 31.0"),
     "`# lock_timeout = 31.0` says the default is 31.0, but Config().lock_timeout is 30.0"),
    (("# dry_run = false", "# dry_run = true"),
     "`# dry_run = true` says the default is True, but Config().dry_run is False"),
    (("# parent_wait = 10.0\n", ""), "share/config.toml: no commented line for Config().parent_wait = 10.0"),
    (("# remove_timeout = 5.0", "# remove_timeout = 5.0\n# remove_timeout = 5.0"),
     "share/config.toml: `remove_timeout` is commented 2 times"),
    (("# sysfs_root = \"/sys\"", "# sysfs_root = \"/sys\"\n# sysfs_rot = \"/sys\""), "unknown key 'sysfs_rot'"),
])
def test_a_commented_default_edited_by_hand_is_found(tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    """The check above can fail: each hand edit of the shipped file is reported."""
    text = default_config_text()
    assert edit[0] in text
    try:
        found = differences(text.replace(edit[0], edit[1], 1), tmp_path)
    except config.HookError as e:
        found = [str(e)]
    assert any(expected in why and re.match(r"share/config\.toml(:\d+)?: |config ", why) for why in found), found


def test_the_shipped_file_is_the_one_the_package_and_install_use() -> None:
    assert Path(DEFAULT_CONFIG_SOURCE) == REPO / "mdev_hooks" / "share" / "config.toml"


def readme_default(value: Any) -> str:
    """Config's default as README's table writes it."""
    if isinstance(value, bool):
        return "false" if not value else "true"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_readme_table_says_config_defaults() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| `([^`]*)` \|", (REPO / "README.md").read_text(), re.M)
    assert {key for key, _ in rows} == {k for k in KEYS if not is_example(k)}, rows
    wrong = [f"README.md: `{key}` default `{shown}`, Config().{key} = {getattr(DEFAULTS, key)!r}"
             for key, shown in rows if shown != readme_default(getattr(DEFAULTS, key))]
    assert wrong == []


def test_the_man_page_documents_every_key_with_the_default_of_config() -> None:
    page = manpage.render(build_parser(), "0", "2026-01-01", default_config_text())
    section = page[page.index(".SH CONFIGURATION"):page.index(".SH FILES")]
    tags = re.findall(r"^\.T[PQ]\n\\fB(.*)\\fR$", section, re.M)
    documented = {re.split(r" = |\]", t.replace("\\-", "-").lstrip("["))[0]: t for t in tags}
    assert sorted(documented) == sorted(KEYS)
    for key in KEYS:
        if not is_example(key):
            assert documented[key].replace("\\-", "-").startswith(f"{key} = "), documented[key]
    files = page[page.index(".SH FILES"):page.index(".SH ENVIRONMENT")].replace("\\-", "-")
    for path in (config.DEFAULT_PATH, DEFAULTS.state_dir, DEFAULTS.lock_dir, DEFAULTS.log_file):
        assert f"\\fI{path}" in files, path
