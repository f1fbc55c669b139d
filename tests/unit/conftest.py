"""The unit tier: in-process, no root, no FUSE, no libvirt; each host is a materialized sysfs in tmp_path."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from fakesysfs.snapshot import materialize_cached
from support.host import MakeHost, UnitHost
from support.ids import A40_BUSY


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


@pytest.fixture(scope="session")
def shared_host(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., UnitHost]:
    """shared_host(["nvidia-a40-sriov"], devices=[...]): one read-only host per (profiles, devices) for the whole
    session, on a sysfs tree kept between runs next to pytest's own temporary directories (materialize_cached: a
    32-VF profile is ~7000 files); plan/types/status only, no claims, no config changes."""
    trees = tmp_path_factory.getbasetemp().parent / f"mdev-hooks-unit-sysfs-{os.getuid()}"
    hosts: dict[tuple[tuple[str, ...], tuple[tuple[str, str, str], ...]], UnitHost] = {}

    def get(profiles: Sequence[str], devices: Sequence[tuple[str, str, str]] = ()) -> UnitHost:
        key = (tuple(profiles), tuple(devices))
        if key not in hosts:
            sysfs = materialize_cached(profiles, trees, devices)
            hosts[key] = UnitHost(tmp_path_factory.mktemp("shared"), list(profiles), read_only=True, sysfs=sysfs)
        return hosts[key]

    return get


@pytest.fixture
def a40(shared_host: MakeHost) -> UnitHost:
    """The A40 (SR-IOV, 32 VFs) with no vGPU, shared read-only."""
    return shared_host(["nvidia-a40-sriov"])


@pytest.fixture
def a40_busy(shared_host: MakeHost) -> UnitHost:
    """The A40 with ids.A40_BUSY (one nvidia-565 on its first VF), shared read-only."""
    return shared_host(["nvidia-a40-sriov"], A40_BUSY)
