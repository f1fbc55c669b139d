"""pyproject's explicit package list names every package of the source tree (a missing one installs a wheel, and a
.deb, that cannot import it: only an editable install hides that).

Invariant: reads pyproject.toml as text (no TOML library on every Python the tests run on).
"""

from __future__ import annotations

import re

from support.hookrun import REPO


def test_every_package_directory_is_in_pyproject() -> None:
    text = (REPO / "pyproject.toml").read_text()
    found = re.search(r"^packages = \[(.*)\]$", text, re.M)
    assert found, "pyproject.toml has no one-line `packages = [...]`"
    listed = set(re.findall(r'"([^"]+)"', found.group(1)))
    tree = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "mdev_hooks").rglob("__init__.py")}
    assert tree == listed
