"""Helpers for the libvirt tier: domain XML, the installed hook and its config, the lab a test module gets
(virsh and the logs: lvdaemon.py, re-exported here).

Everything here drives the real system libvirtd the way an admin would: files under /etc, `virsh`, SIGHUP.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvdaemon import REPO as REPO
from lvdaemon import DaemonLog as DaemonLog
from lvdaemon import HookCall as HookCall
from lvdaemon import HookLog as HookLog
from lvdaemon import Run as Run
from lvdaemon import Started as Started
from lvdaemon import ctl as ctl
from lvdaemon import daemon_log as daemon_log
from lvdaemon import finish as finish
from lvdaemon import reload_daemon as reload_daemon
from lvdaemon import run as run
from lvdaemon import set_daemon_log as set_daemon_log
from lvdaemon import virsh as virsh
from lvdaemon import virsh_ok as virsh_ok
from lvdaemon import virsh_start_async as virsh_start_async
from support import domxml
from support.ids import uid as new_uuid

LAUNCHER = REPO / "hooks" / "qemu"
NS = "urn:mdev-hooks:domain:1"
HOOKS_DIR = Path("/etc/libvirt/hooks")
CONFIG_DIR = Path("/etc/mdev-hooks")
CONFIG_FILE = CONFIG_DIR / "config.toml"
QEMU_D_NAME = "50-mdev-hooks"
# every domain this tier defines starts with this, so leftovers are recognisable (and cleaned up)
PREFIX = "mdevhooks-t-"
WRITE_OPS = {"create", "remove"}
# one line per scenario: what the fake's journal showed (printed by conftest with -v or MDEV_HOOKS_EVIDENCE=1)
EVIDENCE: list[str] = []
VFIO_ERROR = "error: unsupported configuration: Mediated host device assignment requires VFIO support"


@dataclass(frozen=True)
class Mdev:
    uuid: str
    parent: str
    type: str


# ---------------------------------------------------------------- domain XML


def metadata_xml(mdevs: Iterable[Mdev], style: str) -> str:
    """Our metadata element as a user would hand-write it (support.domxml's): `prefixed` (children in the
    namespace, as in examples/) or `bare` (only the top element in the namespace, children in no namespace)."""
    if style not in ("prefixed", "bare"):
        raise ValueError(style)
    return domxml.metadata_element([domxml.mdev(m.uuid, m.parent, m.type) for m in mdevs],
                                   prefixed=style == "prefixed")


def set_metadata_value(mdevs: Iterable[Mdev]) -> str:
    """The value for `virsh metadata --set` (libvirt puts every element into the namespace)."""
    devs = "".join(f'<device uuid="{m.uuid}" parent="{m.parent}" type="{m.type}"/>' for m in mdevs)
    return f"<mdevs>{devs}</mdevs>"


def domain_xml(name: str, dom_uuid: str, managed: Sequence[Mdev] = (), unmanaged: Sequence[str] = (),
               metadata: str = "", pci: Sequence[str] = ()) -> str:
    """A 64 MiB TCG domain without disks (support.domxml's builder): mdev hostdevs, managed then not, then managed
    PCI hostdevs at the addresses `pci`; `metadata` is inserted verbatim into <metadata>."""
    items: list[domxml.Mdev | domxml.PciHostdev] = [domxml.Mdev(m.uuid, entry=False, display="") for m in managed]
    items += [domxml.Mdev(u, hostdev="no", entry=False, display="") for u in unmanaged]
    items += [domxml.PciHostdev(a) for a in pci]
    return domxml.domain_xml(name, dom_uuid, items, raw_metadata=metadata, metadata=False, domain_type="qemu",
                             machine="pc", devices_tail="<memballoon model='none'/>").decode()


def define(xml: str, tmp: Path) -> None:
    f = tmp / f"def-{time.monotonic_ns()}.xml"
    f.write_text(xml)
    virsh_ok("define", str(f))


def undefine(name: str) -> None:
    if virsh("domstate", name).stdout.strip() in ("running", "paused"):
        virsh("destroy", name)
    virsh("undefine", name)


def cleanup_test_domains() -> None:
    r = virsh("list", "--all", "--name")
    for name in r.stdout.split():
        if name.startswith(PREFIX):
            undefine(name)


def start_failed_on_vfio(r: Run, name: str) -> bool:
    return r.rc == 1 and r.stderr == f"error: Failed to start domain '{name}'\n{VFIO_ERROR}\n"


# ---------------------------------------------------------------- hook, config, log


def hook_path(layout: str) -> Path:
    return HOOKS_DIR / "qemu" if layout == "qemu" else HOOKS_DIR / "qemu.d" / QEMU_D_NAME


def install_command(layout: str) -> list[str]:
    """`mdev-hooks install --no-extras [--qemu-d]` into /etc with this interpreter (the hook's first line names
    it); --no-extras: no man page, completion or logrotate snippet on the host."""
    return [sys.executable, "-m", "mdev_hooks.admin.cli", "install", "--no-extras", "--hooks-dir", str(HOOKS_DIR),
            "--config-dir", str(CONFIG_DIR)] + (["--qemu-d"] if layout == "qemu.d" else [])


def install_hook(layout: str) -> Path:
    """Install the hook as an admin would: `mdev-hooks install [--qemu-d]` with this interpreter (first line
    `#!<sys.executable> -I`). Falls back to copying hooks/qemu the same way if the command is missing."""
    dest = hook_path(layout)
    r = run(install_command(layout), timeout=120)
    if r.rc == 0:
        assert dest.is_file() and os.access(dest, os.X_OK), f"{r}\n{dest} not installed"
        return dest
    assert "No module named mdev_hooks.admin.cli" in r.stderr or "invalid choice: 'install'" in r.stderr, str(r)
    dest.parent.mkdir(parents=True, exist_ok=True)
    body = LAUNCHER.read_text().split("\n", 1)[1]
    tmp = HOOKS_DIR / f".{dest.name}.tmp"  # never a half-written file inside qemu.d/
    tmp.write_text(f"#!{sys.executable} -I\n{body}")
    tmp.chmod(0o755)
    tmp.replace(dest)
    return dest


def remove_hooks() -> None:
    (HOOKS_DIR / "qemu").unlink(missing_ok=True)
    shutil.rmtree(HOOKS_DIR / "qemu.d", ignore_errors=True)


def write_config(sysfs_root: Path | str, workdir: Path, **extra: Any) -> dict[str, Path]:
    """/etc/mdev-hooks/config.toml pointing sysfs, ledger, locks and log into workdir (libvirt scrubs the
    environment, so the file at the default path is the only way to configure the hook under libvirtd)."""
    paths = {"state_dir": workdir / "state", "lock_dir": workdir / "locks", "log_file": workdir / "hook.log"}
    for k in ("state_dir", "lock_dir"):
        paths[k].mkdir(parents=True, exist_ok=True)
    lines = [f'sysfs_root = "{sysfs_root}"'] + [f'{k} = "{v}"' for k, v in paths.items()]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    CONFIG_DIR.mkdir(parents=True, exist_ok=True)
    CONFIG_FILE.write_text("\n".join(lines) + "\n")
    return paths


@contextmanager
def saved_host_state(backup_root: Path, clear: bool = True) -> Iterator[None]:
    """Move /etc/libvirt/hooks and /etc/mdev-hooks aside, give the tests empty ones, put the originals back.

    clear=False (the demo): copy them aside but leave them in place (an admin's own hooks keep running), and put
    the copies back all the same."""
    saved: dict[Path, Path | None] = {}
    for d in (HOOKS_DIR, CONFIG_DIR):
        if d.exists():
            dest = backup_root / d.name
            shutil.copytree(d, dest, symlinks=True)
            shutil.copystat(d, dest)
            saved[d] = dest
        else:
            saved[d] = None
    if clear:
        shutil.rmtree(CONFIG_DIR, ignore_errors=True)
        remove_hooks()
        HOOKS_DIR.mkdir(parents=True, exist_ok=True)
    try:
        yield
    finally:
        for d, src in saved.items():
            shutil.rmtree(d, ignore_errors=True)
            if src is not None:
                shutil.copytree(src, d, symlinks=True)
                shutil.copystat(src, d)


@dataclass
class Lab:
    """What a test module gets: the mounted fake, the hook's log, a work dir, where the hook is installed, and
    (dlog) libvirtd's record of the hook runs."""

    fs: Any  # fakesysfs.harness.FakeSysfs
    log: HookLog
    tmp: Path
    layout: str
    hook: Path

    @property
    def dlog(self) -> DaemonLog:
        return daemon_log()

    def jmark(self) -> int:
        return len(self.fs.journal())

    def any_writes(self, mark: int) -> list[dict[str, Any]]:
        """Every write() to the fake since mark (the journal records writes, not reads), minus control commands."""
        return [e for e in self.fs.journal()[mark:] if e.get("op") != "control"]

    def writes(self, mark: int) -> list[dict[str, Any]]:
        """create/remove journal entries since mark."""
        return [e for e in self.fs.journal()[mark:] if e.get("op") in WRITE_OPS and e.get("actor") == "user"]

    def device_uuids(self) -> list[str]:
        """The UUIDs of every mdev the fake has now, sorted."""
        return sorted(d if isinstance(d, str) else d["uuid"] for d in self.fs.devices())

    def ledger_files(self) -> list[str]:
        """Everything under the hook's state_dir (the ledger), relative to the work dir."""
        return sorted(str(p.relative_to(self.tmp)) for p in (self.tmp / "state").rglob("*"))

    def remove_external(self, uuid: str) -> None:
        """Remove a device the test created behind the hook's back (`create_external`), if it is still there."""
        remove = Path(self.fs.root) / "bus" / "mdev" / "devices" / uuid / "remove"
        if remove.exists():
            remove.write_text("1")

    def define(self, name: str, managed: list[Mdev] = [], unmanaged: list[str] = [],  # noqa: B006
               style: str = "prefixed") -> str:
        """Define a test domain; style `virsh` sets the metadata afterwards with `virsh metadata --set`."""
        name = PREFIX + name
        meta = metadata_xml(managed, style) if managed and style != "virsh" else ""
        define(domain_xml(name, new_uuid(), managed, unmanaged, meta), self.tmp)
        if managed and style == "virsh":
            virsh_ok("metadata", name, "--uri", NS, "--key", "mdev", "--config", "--set", set_metadata_value(managed))
        return name

    def record(self, scenario: str, mark: int) -> None:
        """Keep a one-line summary of the journal's writes for the tier's evidence section."""
        ws = self.writes(mark)
        parts = [f"{e['op']} {str(e.get('uuid'))[:8]} {e.get('parent')}/{e.get('type') or '-'} {e.get('result')}"
                 for e in ws]
        EVIDENCE.append(f"[{self.layout}] {scenario}: {len(ws)} writes: " + ("; ".join(parts) or "none"))


@contextmanager
def daemon_session(workdir: Path, clear: bool = True) -> Iterator[DaemonLog]:
    """The system libvirtd for a test session or a benchmark: /etc's hook and config dirs saved to `workdir` and
    put back, the daemon started if it was not running (and stopped after), its hook-call log on (in `workdir`),
    test domains and our hooks removed at both ends. A daemon we did not start is reloaded, so it forgets our
    hook, and gets its own log settings back.

    clear=False (the demo): /etc's dirs stay as they are during the session (see saved_host_state), and a daemon
    we did not start is reloaded only once they are back, so it finds the admin's own hooks again."""
    dlog = DaemonLog(workdir / "libvirtd-hooks.log")
    reload_after = False  # clear=False and a daemon we did not start
    try:
        with saved_host_state(workdir, clear=clear):
            started = dlog.started = ctl("status").rc != 0
            reload_after = not clear and not started
            if started:
                r = ctl("start")
                assert r.rc == 0, str(r)
            try:
                dlog.enable()
                set_daemon_log(dlog)
                cleanup_test_domains()
                yield dlog
            finally:
                cleanup_test_domains()
                remove_hooks()
                if started:
                    r = ctl("stop")
                    assert r.rc == 0, str(r)
                elif clear:
                    reload_daemon()
                    dlog.restore()
    finally:
        if reload_after:
            try:
                reload_daemon()
            finally:
                dlog.restore()
        set_daemon_log(None)


@contextmanager
def open_lab(profiles: str | list[str], layout: str, tmp: Path) -> Iterator[Lab]:
    """The module-scoped lab: a FUSE fake of `profiles`, the config pointing at it, the real hook installed in
    `layout` (qemu or qemu.d) and libvirtd reloaded to find it; all undone at exit."""
    from fakesysfs.harness import FakeSysfs

    with FakeSysfs(profiles, tmp / "fake") as fs:
        paths = write_config(fs.root, tmp, nvidia_release_wait=0.5)
        hook = install_hook(layout)
        log = HookLog(paths["log_file"])
        found = reload_daemon()
        assert f"Found hook script {hook}" in found, found
        try:
            yield Lab(fs, log, tmp, layout, hook)
        finally:
            cleanup_test_domains()
            remove_hooks()
            CONFIG_FILE.unlink(missing_ok=True)
