"""Which libvirt daemon runs the qemu hooks on this host (virtqemud with modular daemons, libvirtd, or none) and
what makes it look for a new hook.

Invariant: reads /proc only; says what to run, runs nothing (the Debian package's postinst does the same in shell).
"""

from __future__ import annotations

import os

from mdev_hooks.admin.install_cmd import QEMU

DAEMONS = ("virtqemud", "libvirtd")  # the modular daemon (RHEL 9, Fedora) first: it runs the qemu hooks there


def running_daemon(proc: str = "/proc") -> str | None:
    """The libvirt daemon that runs qemu hooks here: virtqemud (modular daemons), libvirtd (monolithic), or None."""
    names = set()
    for pid in (p for p in os.listdir(proc) if p.isdigit()):
        try:
            with open(os.path.join(proc, pid, "comm")) as f:
                names.add(f.read().strip())
        except OSError:
            continue
    return next((d for d in DAEMONS if d in names), None)


def reload_command(daemon: str, systemd: str = "/run/systemd/system") -> str:
    """How to make the daemon look for hooks again: systemd's reload, else SIGHUP."""
    if os.path.isdir(systemd):
        return f"systemctl reload {daemon}"
    return f"kill -HUP $(pidof {daemon})"


def reload_advice(target: str, created: bool, before: list[str], proc: str = "/proc",
                  systemd: str = "/run/systemd/system") -> str:
    """Whether libvirt must be told of the hook: only a daemon that knew no qemu hook when it started must."""
    if not created:
        return f"libvirt re-reads {target} on every call: nothing to reload"
    daemon = running_daemon(proc)
    if daemon is None:
        return "no libvirt daemon (libvirtd, virtqemud) is running: it will find the hook when it starts"
    cmd = reload_command(daemon, systemd)
    if before:
        return (f"{daemon} already calls qemu hooks ({before[0]} exists) and re-reads {QEMU} and qemu.d/ on every "
                f"call: nothing to reload (if {before[0]} was itself added after {daemon} started, run `{cmd}`)")
    return (f"libvirt must be told: {daemon} only finds a hook that did not exist when it started; run:\n"
            f"    {cmd}")
