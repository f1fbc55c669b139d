"""The interface every device kind implements: what exists now, how its device is planned, written, verified and
cleared, and every word (log events, error lines, `plan`/`status`/`gc` wording) that differs between kinds.

Invariant: the skeleton (core/plan.py, prepare.py, release.py and the admin commands) asks a DeviceKind and never
looks at which kind it is; a method with a default here is one a kind may leave alone.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mdev_hooks.core.env import Env, Existing, Step
from mdev_hooks.core.ledger import Claim
from mdev_hooks.domain import Domain, ManagedDevice
from mdev_hooks.errors import HookError
from mdev_hooks.kernel import Sysfs


def event_names(prefix: str, write: str, written: str, clear: str, cleared: str) -> dict[str, str]:
    """The skeleton's moments -> a kind's log events, from its verbs (mdev: create, created, remove, removed)."""
    words = {"kept": "kept", "would_create": f"would_{write}", "would_adopt": "would_adopt", "adopted": "adopted",
             "write_failed": f"{write}_failed", "written": written, "unadopted": "unadopted",
             "clear_failed": f"{clear}_failed", "cleared": cleared}
    return {moment: f"{prefix}.{word}" for moment, word in words.items()}


class DeviceKind:
    """One kind of device. `events` maps the skeleton's moments to this kind's log event names (event_names(), plus
    "driver_waited" for a kind whose driver_wait() can be > 0)."""

    kind: str  # the `<device kind=...>` word, stored in each claim
    noun: str  # how error lines call the key's thing: "mdev", "VF"
    article: str  # the noun's indefinite article: "an" (mdev), "a" (VF)
    key_label: str  # the key's column heading: "UUID", "VF"
    bus: str  # bus/<bus>/devices/<key> is the device's sysfs node
    counts_instances: bool  # validation sums available_instances per (parent, type) before any write
    mdevctl_defines: bool = False  # mdevctl definitions can describe it (then the domain's metadata wins)
    events: ClassVar[dict[str, str]]
    kept_reason: str  # the log's words for a device this domain already has
    adopt_reason: str  # ... for one that exists and nobody owns
    gone_reason: str = "device gone"  # an orphan's reason when the device no longer exists
    unused_reason: str  # why a metadata entry of this kind is not used (no matching hostdev)
    status_fields: ClassVar[dict[str, Any]] = {}  # fields a `status --json` device of this kind also has

    # -- what a device is called -----------------------------------------------------------------------------------
    def label(self, m: ManagedDevice, mapped: str) -> str:
        """How error lines name the device; `mapped` is the [parents] note to put after its parent."""
        raise NotImplementedError

    def describe_claim(self, c: Claim) -> str:
        """How `gc` names a claimed device (its owner follows)."""
        raise NotImplementedError

    def type_cell(self, type_: str) -> str:
        """The TYPE cell of `status` for a device of this kind."""
        return type_

    # -- planning --------------------------------------------------------------------------------------------------
    def bind(self, domain: Domain, env: Env) -> Domain:
        """Give the domain's entries of this kind whose key the host decides (domain.vf_entries) their keys."""
        return domain

    def current(self, sysfs: Sysfs, key: str) -> Existing | None:
        """What exists now for a ledger key, None if nothing."""
        raise NotImplementedError

    def plan(self, env: Env, m: ManagedDevice, claim: Claim | None, taken: set[str]) -> Step:
        """The kind's own validation: what prepare would do, and why it would fail."""
        raise NotImplementedError

    def parent_problem(self, env: Env, m: ManagedDevice) -> str | None:
        """Why this host cannot make m at all (its parent or type), whatever exists and whoever owns it, or None."""
        return None

    def no_free_instance(self, env: Env, m: ManagedDevice, available: int | None, need: int) -> str:
        """The line when the domain asks more of (parent, type) than is free (kinds that count instances)."""
        raise NotImplementedError

    def missing(self, env: Env, m: ManagedDevice) -> bool:
        """True while what the device needs is not registered yet (a driver still loading): worth waiting for."""
        raise NotImplementedError

    # -- prepare ---------------------------------------------------------------------------------------------------
    def bind_log(self, log: Any, key: str, parent: str, type_: str, pf: str | None) -> Any:
        return log.bind(mdev=key, parent=parent, type=type_)

    def claim_parent(self, m: ManagedDevice) -> str:
        """The parent recorded in the claim (what current() will report)."""
        return m.parent

    def write(self, sysfs: Sysfs, m: ManagedDevice) -> None:
        """Make the device (one write); OSError as the kernel gave it."""
        raise NotImplementedError

    def write_error(self, env: Env, step: Step, e: OSError) -> HookError:
        raise NotImplementedError

    def verify(self, sysfs: Sysfs, m: ManagedDevice) -> str | None:
        """After the write: the problem if the kernel does not show what was asked, else None."""
        raise NotImplementedError

    def written_fields(self, env: Env, m: ManagedDevice) -> dict[str, Any]:
        return {}

    # -- release ---------------------------------------------------------------------------------------------------
    def clear(self, sysfs: Sysfs, key: str) -> None:
        """Undo the device (one write); OSError as the kernel gave it."""
        raise NotImplementedError

    def gone(self, sysfs: Sysfs, key: str) -> bool:
        """After clear() raised ENOENT: is the device really gone (else the error stands)?"""
        return True

    def not_clearable(self, env: Env, c: Claim) -> tuple[str, str] | None:
        """Before clearing: (the log's reason, the line for the user) if it cannot be cleared now, else None."""
        return None

    def clear_error(self, c: Claim, e: OSError) -> str:
        raise NotImplementedError

    def cleared_fields(self, env: Env, c: Claim) -> dict[str, Any]:
        return {}

    def driver_wait(self, env: Env, c: Claim) -> float:
        """Seconds to let the vendor's driver remove the device itself first (NVIDIA's mdev vGPUs; logged as
        events["driver_waited"]), 0 for none."""
        return 0.0

    # -- `mdev-hooks plan` -----------------------------------------------------------------------------------------
    def plan_row(self, step: Step, env: Env) -> dict[str, Any]:
        """The fields of `plan`'s row for the step (admin/plan_cmd.DeviceRow's, without key, action, verdict,
        problem, kind and pf, which the skeleton fills)."""
        raise NotImplementedError

    def plan_action(self, step: Step, env: Env) -> str:
        """What a start would do for the step, in `plan`'s words (with the files it writes)."""
        raise NotImplementedError

    def ignored_line(self, key: str, parent: str, type_: str) -> str:
        """`plan`'s line for a metadata entry of this kind that the domain does not use."""
        raise NotImplementedError
