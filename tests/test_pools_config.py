"""The config's [pools] table: members in listed order, names validated like [parents]' (they reach lock file
names), every mistake one error naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdev_hooks.config import Config, load
from mdev_hooks.errors import HookError


def _load(tmp_path: Path, text: str) -> Config:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return load({"MDEV_HOOKS_CONFIG": str(p)})


def test_members_keep_their_listed_order(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[pools]\ngpu = ["0000:5e:00.0", "0000:3b:00.0"]\n"vdi-2" = ["mtty"]\n')
    assert cfg.pools == (("gpu", ("0000:5e:00.0", "0000:3b:00.0")), ("vdi-2", ("mtty",)))


@pytest.mark.parametrize("text", [
    'pools = "gpu"',  # not a table
    "[pools]\ngpu = []",  # no member
    '[pools]\ngpu = "0000:3b:00.0"',  # not a list
    '[pools]\ngpu = ["../../etc"]',  # not a parent name
    '[pools]\ngpu = ["mtty", "mtty"]',  # a member twice
    '[pools]\n"a/b" = ["mtty"]',  # not a pool name
    "[pools]\ngpu = [1]",
])
def test_a_bad_pools_table_is_one_error_naming_the_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(HookError, match=f"config {tmp_path / 'c.toml'}: (pools|\\[pools\\])"):
        _load(tmp_path, text)
