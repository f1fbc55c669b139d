"""The one place the tests import mdev-hooks' own modules from (the package layout may change; the tests do not).

Invariant: every other helper and test imports product names from here only; what is not the CLI is kept to the
few internals the unit tier checks directly (ledger, VF choice).
"""

from __future__ import annotations

from typing import Any

from mdev_hooks.admin.cli import main as cli_main
from mdev_hooks.config import Config
from mdev_hooks.core.env import Env, Step
from mdev_hooks.core.ledger import Claim, CorruptClaim, Ledger
from mdev_hooks.core.sriov import pick_vf, sriov_vfs
from mdev_hooks.domain import ManagedDevice as ManagedMdev
from mdev_hooks.enums import ClaimState

INTENT, CREATED, ADOPTED = ClaimState.INTENT, ClaimState.CREATED, ClaimState.ADOPTED

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
    return Claim(key, domain_uuid, domain_name, parent, type_, ClaimState(state), **more)


def claim_key(claim: Claim) -> str:
    """The key of a claim: an mdev UUID or a VF address."""
    return claim.key


def step_device(step: Step) -> ManagedMdev:
    """The device a validation step is about."""
    return step.device
