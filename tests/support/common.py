"""Ids, one-line error assertions and the `mdev-hooks` command as the FUSE-tier tests run them.

Invariant: one definition each: a test module never defines its own copy of these, nor imports another test module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid as uuidlib
from pathlib import Path
from typing import Any

from support.asserts import assert_one_line
from support.hookrun import HookEnv

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
CLI = Path(sys.executable).parent / "mdev-hooks"
FAKE_VIRSH = TESTS / "support" / "fake_virsh.py"

# parents and types of the fake's profiles
GVT, T4, MTTY, H200_VF = "0000:00:02.0", "0000:3b:00.0", "mtty", "0000:41:00.4"
V54, V58 = "i915-GVTg_V5_4", "i915-GVTg_V5_8"
AP, AP_TYPE = "matrix", "vfio_ap-passthrough"
# domains
DOM1 = "5909df77-0544-4c25-b292-6027c2468ce1"
DOM2 = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
DOM3 = "11111111-2222-4333-8444-555555555555"


def uid() -> str:
    return str(uuidlib.uuid4())


def dom_uuid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def one_line(err: bytes | str) -> str:
    """The hook's or the command's whole stderr, which must be exactly one `mdev-hooks: ...` line, never a
    traceback (asserts.one_line, and no blank line either)."""
    text = err.decode() if isinstance(err, bytes) else err
    assert_one_line(text)
    assert text.count("\n") == 1, text
    return text


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
