"""The unit tier: in-process, no root, no FUSE, no libvirt; each host is a materialized sysfs in tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.host import MakeHost, UnitHost


@pytest.fixture
def make_host(tmp_path: Path) -> MakeHost:
    """make_host(["intel-gvtg"], devices=[(uuid, parent, type)], available=..., vgpus=..., config="...")."""
    count = 0

    def make(profiles: list[str], *args: Any, **kwargs: Any) -> UnitHost:
        nonlocal count
        count += 1
        where = tmp_path / f"host{count}"
        where.mkdir()
        return UnitHost(where, profiles, *args, **kwargs)

    return make
