"""The command's only way to libvirt: the `virsh` program (never used by the hook, which runs under libvirt's lock).

Invariant: every call is bounded by a timeout and fails as one line with virsh's own last error. The program is
`virsh` unless $MDEV_HOOKS_VIRSH names another (tests use a fake); the connection is --connect, default
qemu:///system.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence

from mdev_hooks.errors import HookError
from mdev_hooks.names import canonical_uuid

DEFAULT_URI = "qemu:///system"
TIMEOUT = 60.0


class VirshError(HookError):
    """virsh could not be run, or the command failed."""


class Virsh:
    def __init__(self, uri: str = DEFAULT_URI, environ: Mapping[str, str] = os.environ) -> None:
        self.uri = uri
        override = environ.get("MDEV_HOOKS_VIRSH", "").strip()
        self.program = shlex.split(override) if override else ["virsh"]

    def command(self, args: Sequence[str]) -> list[str]:
        return [*self.program, "-c", self.uri, *args]

    def run(self, args: Sequence[str], timeout: float = TIMEOUT) -> bytes:
        """stdout of `virsh -c URI ARGS`, or VirshError with virsh's own last error line."""
        cmd = self.command(args)
        shown = " ".join(shlex.quote(a) for a in cmd)
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
        except FileNotFoundError:
            raise VirshError(f"cannot run {self.program[0]}: not found (install libvirt-clients)") from None
        except subprocess.TimeoutExpired:
            raise VirshError(f"`{shown}` did not answer within {timeout:g} s") from None
        except OSError as e:
            raise VirshError(f"cannot run {self.program[0]}: {e.strerror}") from None
        if proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit status {proc.returncode}"
            raise VirshError(f"`{shown}` failed: {why}")
        return proc.stdout

    def running_uuids(self) -> set[str]:
        """UUIDs of the active domains (running, paused, ...): `virsh list --uuid`."""
        out = self.run(["list", "--uuid"]).decode(errors="replace")
        found: set[str] = set()
        for line in out.splitlines():
            line = line.strip()
            if line:
                found.add(canonical_uuid(line, "`virsh list --uuid` line"))
        return found

    def dumpxml_inactive(self, domain: str) -> bytes:
        # --security-info: without it graphics passwords are left out, and `define` would drop them
        return self.run(["dumpxml", "--inactive", "--security-info", domain])

    def define(self, xml: bytes) -> None:
        import tempfile

        with tempfile.NamedTemporaryFile(prefix="mdev-hooks-define-", suffix=".xml") as f:
            f.write(xml)
            f.flush()
            self.run(["define", f.name])
