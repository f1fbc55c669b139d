"""Run the real hook (hooks/qemu) as libvirt does: a subprocess, scrubbed environment, XML on stdin; through its sh
front, which starts this interpreter (MDEV_HOOKS_PYTHON) for the operations that concern us."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from support.domxml import domain_xml, mdev
from support.domxml import unmanaged as unmanaged_mdev

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "hooks" / "qemu"


@dataclass
class HookEnv:
    """A config file plus its state/lock/log paths in a temp dir, pointing sysfs_root at a fake."""

    dir: Path
    sysfs_root: str
    extra: str = ""

    def __post_init__(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.dir / "state"
        self.lock_dir = self.dir / "lock"
        self.log_file = self.dir / "hook.log"
        self.write()

    @property
    def config(self) -> Path:
        return self.dir / "config.toml"

    def write(self, extra: str | None = None) -> None:
        if extra is not None:
            self.extra = extra
        self.config.write_text(
            f'sysfs_root = "{self.sysfs_root}"\nstate_dir = "{self.state_dir}"\n'
            f'lock_dir = "{self.lock_dir}"\n'
            + ("" if "log_file" in self.extra else f'log_file = "{self.log_file}"\n')
            # never this host's real /etc/mdevctl.d, unless a test names its own
            + ("" if "mdevctl_dir" in self.extra else f'mdevctl_dir = "{self.dir / "mdevctl.d"}"\n')
            # a missing parent fails at once, unless a test is about waiting for one
            + ("" if "parent_wait" in self.extra else "parent_wait = 0\n")
            + f"{self.extra}\n"
        )

    def environ(self, **more: str) -> dict[str, str]:
        # what libvirt passes (LC_ALL, PATH, HOME), plus the test-only config switch
        env = {"LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/root", "MDEV_HOOKS_CONFIG": str(self.config)}
        env["MDEV_HOOKS_PYTHON"] = sys.executable
        env.update(more)
        return env

    def run(self, domain: str, op: str, sub: str, xml: bytes, timeout: float = 60,
            **env: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(HOOK), domain, op, sub, "-"], input=xml,
                              capture_output=True, env=self.environ(**env), timeout=timeout, cwd="/")

    def start(self, domain: str, op: str, sub: str, xml: bytes, **env: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([str(HOOK), domain, op, sub, "-"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.environ(**env), cwd="/")
        assert p.stdin is not None
        p.stdin.write(xml)
        p.stdin.close()
        return p

    def ledger(self) -> list[str]:
        if not self.state_dir.exists():
            return []
        return sorted(p.name for p in self.state_dir.iterdir())

    def wait_logged(self, p: subprocess.Popen[bytes], event: str, timeout: float = 60) -> None:
        """Until the running hook `p` has logged `event` (its start-up alone can take seconds on a loaded host: a
        fixed sleep counted from the process start would not do); it must not exit first."""
        import time

        deadline = time.monotonic() + timeout
        while not (self.log_file.exists() and f'"{event}"' in self.log_file.read_text()):
            assert p.poll() is None, p.stderr.read() if p.stderr else ""
            assert time.monotonic() < deadline, f"the hook never logged {event}"
            time.sleep(0.1)

    def events(self) -> list[dict[str, object]]:
        import json
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines() if line.strip()]


def mdev_xml(name: str, dom_uuid: str, mdevs: Sequence[tuple[str, str, str]], unmanaged: Sequence[str] = (),
             prefixed: bool = True) -> bytes:
    """A domain (support.domxml's builder) with managed mdev hostdevs (uuid, parent, type), each with its metadata
    entry, then managed='no' ones; our metadata element is there even when it names nothing."""
    items = [mdev(u, p, t) for u, p, t in mdevs] + [unmanaged_mdev(u) for u in unmanaged]
    return domain_xml(name, dom_uuid, items, prefixed=prefixed, metadata=True)


def cannot_run(reason: str) -> None:
    """Skip a tier that cannot run here, except under CI (any non-empty $CI), where it is a failure: a skipped tier
    must never pass for a tested one. The one copy of that rule (FUSE, libvirt and package tiers)."""
    import os

    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI={os.environ['CI']}, so this is a failure, not a skip")
    pytest.skip(reason)


def require_fuse(what: str = "fakesysfs") -> None:
    """The FUSE fake needs /dev/fuse and fusermount3 (scripts/setup installs fuse3)."""
    import os
    import shutil

    if os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None:
        return
    cannot_run(f"{what} needs /dev/fuse and fusermount3 (scripts/setup installs fuse3)")
