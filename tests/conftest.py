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


# ---- faults: one fault matrix for test_faults_mdev.py and test_faults_nvidia_vf.py (owner: tests/support) ----------
from support.faultmatrix import MATRIX, Matrix  # noqa: E402


@pytest.fixture(scope="session")
def matrix() -> Iterator[Matrix]:
    """docs/fault-matrix.md is rewritten at the end of a session that measured every row, with no leak."""
    yield MATRIX
    MATRIX.write()


# ---- end faults ----------------------------------------------------------------------------------------------------
