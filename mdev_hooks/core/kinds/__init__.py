"""The registry of device kinds: each kind is one module of this package (base.py is the interface), loaded the
first time a device of that kind is met.

Invariant: adding a kind means one module here defining `KIND` and one line in MODULES (or a register() call);
nothing outside this package branches on the kind. A hook run for mdevs only never imports another kind's module.
"""

from __future__ import annotations

from mdev_hooks.core.kinds.base import DeviceKind
from mdev_hooks.core.ledger import Claim
from mdev_hooks.domain import ManagedDevice
from mdev_hooks.enums import Kind
from mdev_hooks.errors import HookError

__all__ = ["MODULES", "DeviceKind", "describe", "key_heading", "kind_of", "known", "owned_elsewhere", "register"]

# the kind's word (`<device kind=...>`, the claim's `kind`) -> its module, which defines KIND
MODULES: dict[str, str] = {
    Kind.MDEV.value: "mdev_hooks.core.kinds.mdev",
    Kind.NVIDIA_VF.value: "mdev_hooks.core.kinds.nvidia_vf",
}
_loaded: dict[str, DeviceKind] = {}


def register(kind: DeviceKind) -> None:
    """Make a kind known by its word (the built-in ones are loaded from MODULES on first use)."""
    _loaded[str(kind.kind)] = kind


def known(word: str) -> bool:
    """True if `word` names a kind (built in, or registered)."""
    return str(word) in MODULES or str(word) in _loaded


def kind_of(kind: str) -> DeviceKind:
    """The kind a device or claim names; HookError for a word no module registers."""
    word = str(kind)
    found = _loaded.get(word)
    if found is None:
        if word not in MODULES:
            raise HookError(f"unknown device kind {word!r} (known: {', '.join(sorted({*MODULES, *_loaded}))})")
        found = __import__(MODULES[word], fromlist=["KIND"]).KIND
        register(found)
    return found


def describe(m: ManagedDevice) -> str:
    """How error lines name a device: `mdev U (type T on P)`, `NVIDIA vGPU type T on VF V of PF P`, ..."""
    return kind_of(m.kind).label(m, f", mapped from {m.mapped_from} by [parents]" if m.mapped_from else "")


def key_heading(kinds: list[str]) -> str:
    """The key column's heading for rows of these kinds: the default kind's (UUID), then any other's."""
    return " / ".join(dict.fromkeys(kind_of(k).key_label for k in [Kind.MDEV.value, *kinds]))


def owned_elsewhere(kind: str, key: str, other: Claim) -> str:
    """The one line for a device (an mdev UUID, or a VF) that the ledger gives to another domain."""
    k = kind_of(kind)
    return (f"cannot use {k.noun} {key}: the ledger gives it to domain {other.domain_name or '?'} "
            f"({other.domain_uuid}); two domains cannot share {k.article} {k.noun}")
