"""The fake kernel's state: devices, the fault-injection rules of the control file, and errno helpers.

Invariant: plain data (no locking, no tree): Kernel and its driver and control-file mixins hold the one lock
while they change it.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field

from fakesysfs.profiles import ParentSpec, TypeSpec
from fakesysfs.tree import File

CONTROL = "/.fake-control"
AP_MAX_ID = 255  # ap_max_adapter_id / ap_max_domain_id on current machines
UEVENT_ACTIONS = {b"add", b"remove", b"change", b"move", b"online", b"offline", b"bind", b"unbind"}


def err(code: int) -> OSError:
    return OSError(code, f"{errno.errorcode[code]} (fake sysfs)")


def errno_of(value: object) -> int:
    """An errno given by name ("EIO") or number."""
    code = getattr(errno, value, None) if isinstance(value, str) else value
    if not isinstance(code, int) or code not in errno.errorcode:
        raise ValueError(f"unknown errno {value!r}")
    return code


@dataclass(eq=False)
class Device:
    uuid: str
    parent: ParentSpec
    type: TypeSpec
    actor: str
    state: str = "creating"  # creating -> active -> removing -> gone; capacity and UUID are held throughout
    group: int = -1
    remove_node: File | None = None
    params: bytes = b""
    adapters: set[int] = field(default_factory=set)
    domains: set[int] = field(default_factory=set)
    control_domains: set[int] = field(default_factory=set)

    @property
    def path(self) -> str:
        return f"{self.parent.path}/{self.uuid}"

    @property
    def type_dir(self) -> str:
        return f"{self.parent.path}/mdev_supported_types/{self.type.id}"


@dataclass
class FailRule:
    op: str
    code: int
    nth: int = 1
    count: int = 1  # -1: every matching write from the nth on
    parent: str | None = None
    seen: int = 0
    fired: int = 0


@dataclass
class Rules:
    fails: list[FailRule] = field(default_factory=list)
    delays: dict[tuple[str, str | None], float] = field(default_factory=dict)
    busy: dict[str, str] = field(default_factory=dict)  # uuid -> "block" | "ebusy"
    exhaust: dict[str | None, int] = field(default_factory=dict)
    timers: list[threading.Timer] = field(default_factory=list)

    def delay(self, op: str, parent: str) -> float:
        return self.delays.get((op, parent), self.delays.get((op, None), 0.0))
