"""The one place the tests import mdev-hooks' own modules from (the package layout may change; the tests do not).

Invariant: every other helper and test imports product names from here only; what is not the CLI is kept to the
few internals the unit tier checks directly (ledger, VF choice).
"""

from __future__ import annotations

from typing import Any

from mdev_hooks.cli import main as cli_main
from mdev_hooks.config import Config
from mdev_hooks.domain import ManagedMdev
from mdev_hooks.ledger import ADOPTED, CREATED, INTENT, Claim, CorruptClaim, Ledger
from mdev_hooks.sriov import pick_vf, sriov_vfs
from mdev_hooks.steps import Env, Step

__all__ = [
    "ADOPTED", "CREATED", "INTENT", "Claim", "Config", "CorruptClaim", "Env", "Ledger", "ManagedMdev", "Step",
    "claim_key", "cli_main", "make_env", "new_claim", "pick_vf", "sriov_vfs", "step_device",
]


class NullLog:
    """What the product's code logs through, discarding everything."""

    def bind(self, **_: Any) -> NullLog:
        return self

    def __getattr__(self, _name: str) -> Any:
        return lambda *_a, **_k: None


def make_env(sysfs_root: str, state_dir: str) -> Env:
    """The environment validate()/pick_vf() get, on a sysfs root and a ledger directory."""
    return Env.from_config(Config(sysfs_root=sysfs_root, state_dir=state_dir), NullLog())


def new_claim(key: str, domain_uuid: str, domain_name: str, parent: str, type_: str, state: str,
              **more: Any) -> Claim:
    """A ledger claim, its key (mdev UUID or VF address) given first whatever the field is called."""
    return Claim(key, domain_uuid, domain_name, parent, type_, state, **more)


def claim_key(claim: Claim) -> str:
    """The key of a claim (the field is `mdev` today, `key` after the rename)."""
    return str(getattr(claim, "key", None) or getattr(claim, "mdev"))  # noqa: B009


def step_device(step: Step) -> ManagedMdev:
    """The device a validation step is about (the field is `mdev` today, `device` after the rename)."""
    device: ManagedMdev = getattr(step, "device", None) or getattr(step, "mdev")  # noqa: B009
    return device
