"""What every `mdev-hooks` command shares: exit codes, the one-line error, argument types, the configuration and
environment a command works in, virsh, and JSON output.

Invariant: a command's failure reaches the user as one `mdev-hooks: ...` line and exit status 1; a usage error is
argparse's, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mdev_hooks import PREFIX, config
from mdev_hooks.core.env import Env
from mdev_hooks.errors import HookError
from mdev_hooks.names import canonical_uuid, is_pci_address, is_valid_name

OK, FAILED, USAGE = 0, 1, 2

EXIT_CODES = """\
exit status:
  0  ok (plan: a start would succeed)
  1  the verdict is negative or the operation failed; the reason is one `mdev-hooks: ...` line on stderr
  2  usage error"""


class NullLog:
    """The hook's code logs through structlog; commands that only read pass this instead."""

    def bind(self, **_: Any) -> NullLog:
        return self

    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *_a, **_k: None


def err(message: str) -> None:
    """The command's error: its first line after the prefix, any further lines as they are."""
    first, *rest = message.splitlines() or [""]
    sys.stderr.write(PREFIX + first + "\n" + "".join(line + "\n" for line in rest))
    sys.stderr.flush()


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


# -- argument types (a bad value is a usage error, exit 2) -------------------------------------------------------
def name_arg(value: str) -> str:
    if not is_valid_name(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid name (one path component of letters, digits "
                                         "and _.:-, e.g. 0000:00:02.0 or nvidia-231)")
    return value


def uuid_arg(value: str) -> str:
    try:
        return canonical_uuid(value, "UUID")
    except HookError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def pci_arg(value: str) -> str:
    if not is_pci_address(value.lower()):
        raise argparse.ArgumentTypeError(f"{value!r} is not a PCI address as sysfs names it (DDDD:BB:SS.F, "
                                         "e.g. 0000:41:00.4)")
    return value.lower()


# -- the world a command works in ----------------------------------------------------------------------------------
def load_config(args: argparse.Namespace) -> config.Config:
    """The configuration (--config, else $MDEV_HOOKS_CONFIG, else the default path), --sysfs-root applied."""
    environ = dict(os.environ)
    if getattr(args, "config", None):
        environ["MDEV_HOOKS_CONFIG"] = args.config
    cfg = config.load(environ)
    if getattr(args, "sysfs_root", None):
        cfg = replace(cfg, sysfs_root=os.path.abspath(args.sysfs_root))
    return cfg


def make_env(args: argparse.Namespace, log: Any = None) -> Env:
    return Env.from_config(load_config(args), log if log is not None else NullLog())


def virsh(args: argparse.Namespace) -> Any:
    from mdev_hooks.admin.virsh import DEFAULT_URI, Virsh

    return Virsh(getattr(args, "connect", None) or DEFAULT_URI)


@dataclass(frozen=True)
class Running:
    """The active domains' UUIDs, or why they are unknown."""

    uuids: frozenset[str] | None
    error: str | None = None

    def of(self, domain_uuid: str) -> bool | None:
        return None if self.uuids is None else domain_uuid in self.uuids


def running(args: argparse.Namespace) -> Running:
    from mdev_hooks.admin.virsh import VirshError

    try:
        return Running(frozenset(virsh(args).running_uuids()))
    except VirshError as e:
        return Running(None, str(e))
