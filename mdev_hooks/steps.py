"""What every kind of device shares on its way through prepare and release: the environment, the step validate()
decides for a device, how error lines name a device, and its ledger claim (taken before any write, dropped after).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mdev_hooks import ledger as L
from mdev_hooks.config import Config
from mdev_hooks.domain import NVIDIA_VF, Domain, ManagedMdev
from mdev_hooks.errors import HookError
from mdev_hooks.sysfs import MdevDevice, Sysfs

CREATE, ADOPT, KEEP = "create", "adopt", "keep"


@dataclass(frozen=True)
class Env:
    cfg: Config
    sysfs: Sysfs
    ledger: L.Ledger
    log: Any

    @classmethod
    def from_config(cls, cfg: Config, log: Any) -> Env:
        return cls(cfg, Sysfs(cfg.sysfs_root), L.Ledger(cfg.state_dir), log)


@dataclass(frozen=True)
class Step:
    mdev: ManagedMdev
    action: str  # create | adopt | keep
    available: int | None
    problem: str | None  # the one-line reason this start would fail, None if fine
    pf: str | None = None  # SR-IOV: the PF the domain named; mdev.parent is then the VF chosen on it
    choice: str | None = None  # SR-IOV: why that VF


def what(m: ManagedMdev) -> str:
    mapped = f", mapped from {m.mapped_from} by [parents]" if m.mapped_from else ""
    if m.kind == NVIDIA_VF:
        on = f"VF {m.uuid} of PF {m.parent}" if m.uuid and m.parent != m.uuid else f"VF {m.uuid or m.parent}"
        return f"NVIDIA vGPU type {m.type} on {on}{mapped}"
    return f"mdev {m.uuid} (type {m.type} on {m.parent}{mapped})"


def current_device(sysfs: Sysfs, kind: str, key: str) -> MdevDevice | None:
    """What exists now for a ledger key: the mdev with that UUID, or (kind nvidia-vf) the vGPU type set on that VF
    as a device whose uuid and parent are the VF; None if nothing."""
    return sysfs.vgpu(key) if kind == NVIDIA_VF else sysfs.device(key)


def owned_elsewhere(kind: str, key: str, other: L.Claim) -> str:
    """The line for a device (an mdev UUID, or a VF) that the ledger gives to another domain."""
    noun = "VF" if kind == NVIDIA_VF else "mdev"
    return (f"cannot use {noun} {key}: the ledger gives it to domain {other.domain_name or '?'} "
            f"({other.domain_uuid}); two domains cannot share {'a' if noun == 'VF' else 'an'} {noun}")


def drop(env: Env, uuid: str) -> None:
    """Forget a claim whose device is gone (or was never ours to remove). If state_dir has turned read-only or
    broken, log it and go on: removing the next device matters more, and a stale claim only makes the next
    start or release of the same domain redo a no-op (or refuse the UUID to other domains: the safe side)."""
    try:
        env.ledger.drop(uuid)
    except HookError as e:
        env.log.error("ledger.drop_failed", mdev=uuid, error=str(e))


def ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 2)


def take(env: Env, domain: Domain, claim: L.Claim, log: Any) -> None:
    """Take the ledger claim for the step (exclusive), or raise: another domain owns the device."""
    other = env.ledger.claim(claim)
    if other is not None and other.domain_uuid == domain.uuid:
        # this domain's own claim from a start whose release never ran (libvirtd died with the hook); validate()
        # found no device for it, so there is nothing to keep: take it over (we hold the parent's lock)
        log.warning("ledger.stale_claim", state=other.state, pid=other.pid)
        env.ledger.update(claim)
        other = None
    if other is not None:
        raise HookError(owned_elsewhere(claim.kind, claim.mdev, other))
