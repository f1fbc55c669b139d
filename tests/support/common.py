"""The `mdev-hooks` command and the fake's journal as the FUSE-tier tests see them (ids: support.ids, the
one-line error: support.asserts).

Invariant: one definition each: a test module never defines its own copy of these, nor imports another test module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.hookrun import REPO, HookEnv

CLI = Path(sys.executable).parent / "mdev-hooks"
FAKE_VIRSH = REPO / "tests" / "support" / "fake_virsh.py"


def user_writes(fs: Any) -> list[tuple[str, str, str, str]]:
    """(op, last path component, data, result) of every write the hook (actor user) made."""
    return [(e["op"], os.path.basename(e["path"]), e["data"], e["result"]) for e in fs.journal()
            if e.get("actor") == "user" and e["op"] != "control"]


def writes(fs: Any) -> list[dict[str, Any]]:
    """The journal records of the hook's creates and removes."""
    return [e for e in fs.journal() if e["op"] in ("create", "remove") and e.get("actor") == "user"]


def cli(h: HookEnv, *args: str, virsh: bool = True) -> subprocess.CompletedProcess[str]:
    """`mdev-hooks ARGS` with the hook's config; virsh is the fake (no domain running) or, virsh=False, a program
    that always fails (running domains unknown)."""
    if virsh:  # libvirt's scrubbed environment, as the hook gets it
        env = h.environ(MDEV_HOOKS_VIRSH=f"{sys.executable} {FAKE_VIRSH}", FAKE_VIRSH_DIR=str(h.dir / "virsh"))
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    else:
        env = dict(os.environ)
        env.pop("MDEV_HOOKS_DRY_RUN", None)
        env.update(MDEV_HOOKS_CONFIG=str(h.config), MDEV_HOOKS_VIRSH="/bin/false")
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


def cli_without_virsh(h: HookEnv, *args: str) -> subprocess.CompletedProcess[str]:
    """The command with a virsh that cannot answer (running domains unknown)."""
    return cli(h, *args, virsh=False)
