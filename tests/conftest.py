"""Shared pytest fixtures. Each block names its owner; append new fixtures in a block of their own."""

from __future__ import annotations

# ---- fakesysfs: the FUSE kernel double (owner: tests/fakesysfs) ---------------------------------------------------
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakesysfs.harness import FakeSysfs
from support.hookrun import require_fuse


@pytest.fixture
def fakesysfs(tmp_path: Path) -> Iterator[Callable[..., FakeSysfs]]:
    """Factory: fakesysfs("intel-gvtg"), fakesysfs(["intel-gvtg", "nvidia-tesla-t4"]),
    fakesysfs([], synthetic_parents=8, synthetic_instances=32). Mounted in tmp_path; all unmounted at test end."""
    require_fuse()
    started: list[FakeSysfs] = []

    def start(profiles: list[str] | str, **synthetic: int) -> FakeSysfs:
        fake = FakeSysfs(profiles, tmp_path / f"fakesysfs{len(started)}", **synthetic)
        started.append(fake)
        return fake.start()

    yield start
    for fake in reversed(started):
        fake.stop()


# ---- end fakesysfs -------------------------------------------------------------------------------------------------


# ---- worlds: the fault matrix, the mdev fault world and the CLI world (owner: tests/support) ------------------------
import functools  # noqa: E402
from contextlib import ExitStack  # noqa: E402

from support.cliworld import World  # noqa: E402
from support.faultmatrix import MATRIX, Matrix  # noqa: E402
from support.faultworld import MdevWorld, make_world  # noqa: E402


@pytest.fixture(scope="session")
def matrix() -> Iterator[Matrix]:
    """docs/fault-matrix.md is rewritten at the end of a session that measured every row, with no leak."""
    yield MATRIX
    MATRIX.write()


@pytest.fixture
def mdev_world(fakesysfs: Callable[..., FakeSysfs], tmp_path: Path) -> Iterator[Callable[..., MdevWorld]]:
    """Factory of the mdev fault world: mdev_world(before=fn, background=True) (support.faultworld.make_world)."""
    with ExitStack() as stacks:
        yield functools.partial(make_world, fakesysfs, tmp_path, stacks)


@pytest.fixture
def cli_world(fakesysfs: Callable[..., FakeSysfs], tmp_path: Path) -> World:
    """The fake (GVT-g, mtty, T4), the hook's config and a fake virsh, for test_cli_*.py (support.cliworld)."""
    return World(fakesysfs(["intel-gvtg", "mtty-sample", "nvidia-tesla-t4"]), tmp_path)


# ---- end faults ----------------------------------------------------------------------------------------------------


# ---- tiers: markers and the golden-file switch (owner: tests/support, tests/unit) ----------------------------------
# `fuse`: the test mounts the FUSE fake (needs root, /dev/fuse); `root`: needs root for another reason; `libvirt` is
# set by tests/libvirt/conftest.py. `python3 -m pytest -m "not fuse and not libvirt"` runs, without root, the rest.
import os  # noqa: E402
from typing import Any  # noqa: E402

# a test or fixture whose own code names one of these starts the FUSE fake itself
_FUSE_NAMES = frozenset({"FakeSysfs", "require_fuse"})
# tests that need root without the fake (none known; "module.py::test_name" entries)
_ROOT_TESTS: frozenset[str] = frozenset()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--regen-golden", action="store_true", default=False,
                     help="rewrite tests/unit/golden/* from the current output instead of comparing "
                          "(same as MDEV_HOOKS_REGEN_GOLDEN=1); read the diff before committing it")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuse: mounts the FUSE fake sysfs (needs root and /dev/fuse)")
    config.addinivalue_line("markers", "root: needs root for a reason other than the FUSE fake")
    if config.getoption("--regen-golden", default=False):
        os.environ["MDEV_HOOKS_REGEN_GOLDEN"] = "1"


def _names_fuse(func: Any) -> bool:
    code = getattr(func, "__code__", None)
    return code is not None and not _FUSE_NAMES.isdisjoint(code.co_names)


def _needs_fuse(item: pytest.Item) -> bool:
    """The `fakesysfs` fixture, or a test or fixture of its closure that starts FakeSysfs / calls require_fuse."""
    if not isinstance(item, pytest.Function):
        return False
    if "fakesysfs" in item.fixturenames or _names_fuse(item.function):
        return True
    defs = item._fixtureinfo.name2fixturedefs
    return any(_names_fuse(d.func) for name in item.fixturenames for d in defs.get(name, ()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _needs_fuse(item):
            item.add_marker(pytest.mark.fuse)
        if f"{item.path.name}::{item.name.split('[')[0]}" in _ROOT_TESTS:
            item.add_marker(pytest.mark.root)


# ---- end tiers -----------------------------------------------------------------------------------------------------
