"""The main job (`bash scripts/demo`): on a simulated mdev host (the FUSE fake of sysfs), install mdev-hooks into the
real libvirtd, `virsh define/start/destroy` an example domain and print a timeline of what libvirtd, the hook and
the fake sysfs did, with a verdict.

Invariant: everything it starts or changes is undone, on success, on error and on Ctrl-C: the domain it defined,
/etc/libvirt/hooks and /etc/mdev-hooks (copied aside and put back), libvirtd (stopped if it started it, else
reloaded with its log settings back), the fake's mount, the work directory (unless --keep).
Exit 0 when the device was created before libvirt needed it and removed afterwards, with nothing left behind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "libvirt")]

import lvlab  # noqa: E402
from fakesysfs.harness import FakeSysfs  # noqa: E402

EXAMPLES = {"intel-gvtg": "gvtg-desktop.xml", "intel-gvtg-1g-aperture": "gvtg-desktop.xml",
            "nvidia-tesla-t4": "t4-workstation.xml"}
TEMPLATE = REPO / "examples" / "gvtg-desktop.xml"
LAUNCHER_MARKER = "# mdev-hooks launcher"


class DemoError(Exception):
    """A reason to stop (exit 1) after cleaning up."""


@dataclass(frozen=True)
class Domain:
    xml: Path
    name: str
    mdev: lvlab.Mdev


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


# ---------------------------------------------------------------- signals: cleanup runs once, to its end


_deferring = False
_pending: list[int] = []


def _interrupted(signum: int, frame: FrameType | None) -> None:
    if _deferring:
        _pending.append(signum)
        return
    shield()
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def deferred() -> Iterator[None]:
    """A signal during a setup step (mounting the fake, starting libvirtd) takes effect when the step is complete,
    so what it started is known to the cleanup (and not, say, a daemon that comes up after the cleanup ran)."""
    global _deferring
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
    if _pending:
        shield()
        raise KeyboardInterrupt(signal.Signals(_pending[0]).name)


def arm() -> None:
    """Ctrl-C, SIGTERM and SIGHUP interrupt the run (and so start the cleanup)."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _interrupted)


def shield() -> None:
    """From here on (the cleanup) those signals are ignored, by us and by the commands the cleanup runs."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)


# ---------------------------------------------------------------- the domain


def domain_for(profile: str, fs: FakeSysfs, work: Path) -> Domain:
    """The example domain for this profile, or one made from the profile's first vfio-pci parent/type."""
    if profile in EXAMPLES:
        xml_path = REPO / "examples" / EXAMPLES[profile]
    else:
        for t in sorted(Path(fs.root).glob("class/mdev_bus/*/mdev_supported_types/*")):
            if (t / "device_api").read_text().strip() == "vfio-pci" and int((t / "available_instances").read_text()):
                parent, mtype = t.parent.parent.name, t.name
                break
        else:
            raise DemoError(f"profile {profile} has no vfio-pci mdev type a PC guest can use")
        text = TEMPLATE.read_text().replace("gvtg-desktop", f"demo-{profile}")
        text = text.replace("0000:00:02.0", parent).replace("i915-GVTg_V5_4", mtype)
        text = re.sub(r"<uuid>[^<]+</uuid>", f"<uuid>{uuidlib.uuid4()}</uuid>", text)
        xml_path = work / f"demo-{profile}.xml"
        xml_path.write_text(text)
    text = xml_path.read_text()
    name = re.search(r"<name>([^<]+)</name>", text)
    dev = re.search(r'<mdev:device uuid="([^"]+)" parent="([^"]+)" type="([^"]+)"', text)
    assert name and dev, f"{xml_path}: no <name> or <mdev:device>"
    return Domain(xml_path, name[1], lvlab.Mdev(*dev.groups()))


# ---------------------------------------------------------------- the hook


def install(work: Path, fs: FakeSysfs) -> lvlab.HookLog:
    """config.toml pointing at the fake, the hook installed (in qemu.d/ if a hook that is not ours is qemu),
    libvirtd reloaded and waited for."""
    paths = lvlab.write_config(fs.root, work, nvidia_release_wait=1.0)  # no vGPU manager here: do not wait 10 s
    qemu = lvlab.hook_path("qemu")
    foreign = qemu.exists() and LAUNCHER_MARKER not in qemu.read_text(errors="replace")
    layout = "qemu.d" if lvlab.hook_path("qemu.d").exists() or foreign else "qemu"
    r = lvlab.run(lvlab.install_command(layout), timeout=120)
    for line in (r.stdout + r.stderr).splitlines():
        print(f"    {line}")
    if r.rc != 0:
        raise DemoError(f"mdev-hooks install failed (exit {r.rc})")
    # libvirtd only notices a new hook script on reload (SIGHUP), not when the file appears
    for found in lvlab.reload_daemon().split("; "):
        print(f"libvirtd rescanned its hooks: {found}")
    return lvlab.HookLog(paths["log_file"])


# ---------------------------------------------------------------- the timeline and the verdict


def timeline(dom: Domain, start: lvlab.Run, t_start: float, t_end: float, hook: list[dict[str, Any]],
             calls: list[lvlab.HookCall], journal: list[dict[str, Any]], before: int, after: int, left: bool) -> int:
    """Print what happened, in time order, and the verdict; returns the exit status."""
    name, m = dom.name, dom.mdev
    err = start.stderr.strip()

    def ms(t: float) -> str:
        return f"{(t - t_start) * 1000:+8.0f} ms"

    def ts(e: dict[str, Any]) -> float:
        return datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()

    creates = [e for e in journal if e.get("op") == "create" and e.get("uuid") == m.uuid]
    removes = [e for e in journal if e.get("op") == "remove" and e.get("uuid") == m.uuid]
    lines = [(c.time, f"libvirtd runs {c.hook} {name} {c.op} {c.subop}") for c in calls]
    for e in hook:
        event, mine = e.get("event"), e.get("mdev") == m.uuid
        if event == "hook.invoked" and e.get("domain") == name:
            lines.append((ts(e), f"  hook pid {e.get('pid')}: {e.get('op')} for domain {name}"))
        elif event == "mdev.created" and mine:
            lines.append((ts(e), f"  created mdev {m.uuid} on {m.parent}, type {m.type}: available_instances "
                                 f"{before} -> {e.get('available_instances')}"))
        elif event == "mdev.removed" and mine:
            back = e.get("available_instances")
            lines.append((ts(e), f"  removed mdev {m.uuid}: available_instances back to {back}"))
        elif event == "mdev.nvidia_wait" and mine:
            how = "it did" if e.get("vanished") else "it did not: the simulated host has no vGPU manager"
            lines.append((ts(e), f"  waited for NVIDIA's driver to remove the vGPU itself ({how})"))
        elif event == "hook.failed" and e.get("domain") == name:
            lines.append((ts(e), f"  hook refused the start: {e.get('error')}"))
        elif (event == "hook.done" and e.get("domain") == name and e.get("op") == "prepare" and start.rc != 0
              and err):
            lines.append((ts(e) + 1e-6, "prepare returned 0; libvirtd checks the hostdevs and fails the start:"))
            lines.append((ts(e) + 2e-6, f"  {err.splitlines()[-1]}"))
    print(f"domain {name}: managed mdev {m.uuid} (parent {m.parent}, type {m.type})")
    print(f"{ms(t_start)}  virsh start")
    for t, text in sorted(lines):
        print(f"{ms(t)}  {text}")
    print(f"{ms(t_end)}  virsh start returned {start.rc}" + (":" if err else ""))
    for line in err.splitlines():
        print(f"{'':13}{line}")
    print("sysfs journal (the fake's record of writes): "
          + ("; ".join(f"{e['op']} {e['result']}" for e in creates + removes) or "no write"))

    ok = (len(creates) == 1 and creates[0]["result"] == "ok" and len(removes) == 1 and removes[0]["result"] == "ok"
          and not left and before == after)
    vfio = "Mediated host device assignment requires VFIO support" in err
    print()
    if vfio:
        print("libvirt's verdict: this host has no VFIO (/dev/vfio/vfio), so libvirt refuses any mdev hostdev right")
        print("after the prepare hook; the VM cannot run here. On a host with VFIO and a real parent device the same")
        print("hook calls happen and the VM starts.")
    elif start.rc == 0:
        print("libvirt's verdict: the domain started and was destroyed.")
    else:
        print("libvirt's verdict: the start failed for another reason (above).")
    if ok:
        print(f"mdev-hooks: behaved as designed: created {m.uuid} before libvirt looked for it, removed it after the")
        print(f"{'failed start' if start.rc else 'domain stopped'}, nothing left behind "
              f"(available_instances {before} -> {after}).")
    else:
        print(f"mdev-hooks: NOT as designed: creates={creates} removes={removes} left={left} "
              f"available_instances {before} -> {after}")
    return 0 if ok and (vfio or start.rc == 0) else 1


# ---------------------------------------------------------------- the run


@dataclass
class State:
    rc: int = 1
    started: bool = False  # libvirtd was not running: the session started it and stops it
    entered: bool = False  # the session is set up: an exception out of it now comes from its cleanup


def run_domain(profile: str, work: Path, fs: FakeSysfs, dlog: lvlab.DaemonLog) -> int:
    """Install the hook, define, start and destroy the domain, print the timeline; the domain is undefined at the
    end whatever happens."""
    defined = ""
    try:
        log = install(work, fs)
        dom = domain_for(profile, fs, work)
        if lvlab.virsh("dominfo", dom.name).rc == 0:
            raise DemoError(f"a domain named {dom.name} already exists here; not touching it")
        say(f"virsh define {dom.xml}")
        r = lvlab.virsh("define", str(dom.xml))
        if r.rc != 0:
            raise DemoError(f"virsh define failed: {r.stderr.strip()}")
        defined = dom.name
        avail = f"class/mdev_bus/{dom.mdev.parent}/mdev_supported_types/{dom.mdev.type}/available_instances"
        before = int(fs.read(avail))
        dmark, hmark, jmark = dlog.mark(), log.mark(), len(fs.journal())

        say(f"virsh start {dom.name}")
        t_start = time.time()
        start = lvlab.virsh("start", dom.name)
        t_end = time.time()
        print(start.stdout + start.stderr, end="", flush=True)
        if start.rc == 0:
            time.sleep(2)
            say(f"virsh destroy {dom.name}")
            r = lvlab.virsh("destroy", dom.name)
            print(r.stdout + r.stderr, end="", flush=True)
        after = int(fs.read(avail))
        left = os.path.exists(fs.path("bus/mdev/devices", dom.mdev.uuid))

        say("timeline")
        return timeline(dom, start, t_start, t_end, log.since(hmark), dlog.timed_calls(dmark, dom.name),
                        fs.journal()[jmark:], before, after, left)
    finally:
        shield()
        if defined:
            lvlab.undefine(defined)


def demo(profile: str, work: Path, st: State) -> None:
    """The fake, then the libvirtd session (/etc saved, daemon started or log settings changed), then the domain;
    each undone by the layer that set it up."""
    say(f"mount the FUSE fake of mdev sysfs, profile {profile}, at {work / 'sysfs'}")
    fs = FakeSysfs(profile, work)
    with ExitStack() as stack:
        stack.callback(fs.stop)
        with deferred():
            fs.start()  # on its own failure it has unmounted already
        say("start libvirtd (if needed) and install the hook + /etc/mdev-hooks/config.toml")
        with deferred():
            dlog = stack.enter_context(lvlab.daemon_session(work, clear=False))
        st.entered, st.started = True, dlog.started
        try:
            st.rc = run_domain(profile, work, fs, dlog)
        except KeyboardInterrupt:
            print("demo: interrupted", file=sys.stderr)
            st.rc = 130
        except ERRORS as e:
            print(f"demo: {e}", file=sys.stderr)
            st.rc = 1
        finally:
            shield()


ERRORS = (DemoError, AssertionError, RuntimeError, OSError, subprocess.SubprocessError, ValueError)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bash scripts/demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="intel-gvtg",
                   help="fake host profile (default intel-gvtg; nvidia-tesla-t4, mtty-sample, ... see tests/fakesysfs)")
    p.add_argument("--no-setup", action="store_true", help="skip scripts/setup (apt-get + pip), which the wrapper runs")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (hook log, fake's journal) instead of deleting it")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: run as root (it installs packages and a libvirt hook)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="mdev-hooks-demo."))
    st = State()
    clean = True
    arm()
    try:
        demo(args.profile, work, st)
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        st.rc = 130
    except ERRORS as e:
        print(f"demo: {e}", file=sys.stderr)
        st.rc, clean = 1, not st.entered
    finally:
        shield()
        if os.path.ismount(work / "sysfs"):  # never delete through a mount
            print(f"demo: {work / 'sysfs'} is still mounted; kept {work}", file=sys.stderr)
        elif args.keep:
            print(f"demo: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if clean and st.entered:
        daemon = "stopped the libvirtd/virtlogd it started" if st.started else "libvirtd left running, reloaded"
        print(f"demo: cleaned up: {daemon}, hook and config restored, fake unmounted")
    elif clean:
        print("demo: cleaned up: libvirtd and /etc as they were, fake unmounted")
    else:
        print("demo: the cleanup failed (above): check `mount | grep fuse`, /etc/libvirt/hooks, /etc/mdev-hooks, "
              "`pgrep libvirtd`", file=sys.stderr)
    print("demo: to see a VM that really runs with its mdev (a real kernel with the mtty sample, in a TCG guest; "
          "minutes): bash scripts/demo --real")
    return st.rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
