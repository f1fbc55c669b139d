"""What every step of prepare and release works with: the environment, the step validation decides for a device.

Invariant: a Step carries everything prepare needs to act (and plan needs to show) without looking again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mdev_hooks.config import Config
from mdev_hooks.core.ledger import Ledger
from mdev_hooks.domain import ManagedDevice
from mdev_hooks.enums import Action
from mdev_hooks.kernel import Sysfs


@dataclass(frozen=True)
class Env:
    cfg: Config
    sysfs: Sysfs
    ledger: Ledger
    log: Any  # a structlog logger (or admin's null logger)

    @classmethod
    def from_config(cls, cfg: Config, log: Any) -> Env:
        return cls(cfg, Sysfs(cfg.sysfs_root), Ledger(cfg.state_dir), log)

    def with_log(self, log: Any) -> Env:
        return Env(self.cfg, self.sysfs, self.ledger, log)


@dataclass(frozen=True)
class Step:
    device: ManagedDevice
    action: Action
    available: int | None
    problem: str | None  # the one-line reason this start would fail, None if fine
    pf: str | None = None  # SR-IOV: the PF the domain named; device.parent is then the VF chosen on it
    choice: str | None = None  # SR-IOV: why that VF


@dataclass(frozen=True)
class Existing:
    """What exists now on the host for a device key: its parent and type (a VF's is the VF and its vGPU type)."""

    parent: str
    type: str


def elapsed_ms(t0: float) -> float:
    """Milliseconds since time.monotonic() was t0, for the log's duration_ms."""
    return round((time.monotonic() - t0) * 1000, 2)


def attrs_text(m: ManagedDevice) -> str:
    """`name=value, ...` of a device's <attr> values, in their order."""
    return ", ".join(f"{n}={v}" for n, v in m.attrs)
