"""`bash scripts/demo --real` without a guest: the wrapper's arguments, the timeline and verdict that
scripts/demo_timeline.py makes of a guest's logs, and a failing step that is named and cleaned up. The run itself (a
TCG guest, minutes) is tests/e2e/demo-smoke, which tests/e2e/run runs on its warm trixie image."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from support.hookrun import REPO
from support.ids import U1

INSTALLED_HOOK = "/etc/libvirt/hooks/qemu.d/50-mdev-hooks"
T0 = 1796194800.0  # 2026-12-02T07:00:00Z


@pytest.fixture(scope="module")
def timeline() -> ModuleType:
    sys.path.insert(0, str(REPO / "scripts"))  # a script, not a package module
    try:
        return importlib.import_module("demo_timeline")
    finally:
        sys.path.remove(str(REPO / "scripts"))


def _wrapper(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REPO / "scripts" / "demo"), *args], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, check=False, env=env)


def test_wrapper_help_and_arguments_of_real() -> None:
    r = _wrapper("-h")
    assert r.returncode == 0 and "bash scripts/demo --real [--no-setup] [--keep]" in r.stdout
    r = _wrapper("--real", "--profile", "mtty-sample", "--no-setup")
    assert r.returncode == 2 and "--real has no --profile" in r.stderr
    r = subprocess.run(["bash", str(REPO / "scripts" / "demo-real"), "--bogus"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 2 and "unknown argument --bogus" in r.stderr


def _clock(t: float) -> str:
    """libvirtd's log time of t (UTC)."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "+0000"


def _iso(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _guest_out(tmp_path: Path, *, removed: bool = True, gone: str = "yes", sysfsdev: str = "") -> Path:
    """A guest's out/ as tests/e2e/guest/demo.sh leaves it after a run, with libvirtd's and the hook's logs."""
    env = {"name": "demo-mtty", "uuid": U1, "parent": "mtty", "type": "mtty-2", "avail_before": "12",
           "t_start": T0, "t_started": T0 + 9.5, "start_rc": "0", "domstate": "running", "qemu_pid": "812",
           "sysfsdev": sysfsdev or f"sysfsdev=/sys/bus/mdev/devices/{U1}", "avail_during": "11",
           "t_checked": T0 + 10.0, "status_line": f"{U1} mtty mtty-2 demo-mtty (created by mdev-hooks)",
           "t_destroy": T0 + 14.0, "t_destroyed": T0 + 16.0, "destroy_rc": "0",
           "avail_after": "12" if removed else "11", "gone": gone}
    (tmp_path / "demo.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    calls = [(T0 + 0.8, "prepare", "begin"), (T0 + 5.0, "start", "begin"), (T0 + 9.0, "started", "begin"),
             (T0 + 14.5, "stopped", "end"), (T0 + 15.0, "release", "end")]
    (tmp_path / "libvirtd.log").write_text("".join(
        f"{_clock(t)}: 901: debug : virHookCall:380 : Calling hook {INSTALLED_HOOK} id=demo-mtty op={op} subop={sub} "
        f"extra=-\n" for t, op, sub in calls) + f"{_clock(T0 + 1)}: 901: debug : virHookCall:380 : Calling hook "
        f"{INSTALLED_HOOK} id=other op=prepare subop=begin extra=-\n")
    events: list[tuple[float, str, int, str, dict[str, object]]] = [
        (T0 + 2.0, "hook.invoked", 300, "prepare", {"mdevs": [U1]}),
        (T0 + 2.5, "mdev.created", 300, "prepare", {"mdev": U1, "available_instances": 11}),
        (T0 + 2.6, "hook.done", 300, "prepare", {"duration_ms": 612.5}),
        (T0 + 15.4, "hook.invoked", 301, "release", {"mdevs": [U1]})]
    if removed:
        events.append((T0 + 15.6, "mdev.removed", 301, "release", {"mdev": U1, "available_instances": 12}))
    lines = [json.dumps({"event": ev, "timestamp": _iso(t), "domain": "demo-mtty", "pid": pid, "op": op, **kw})
             for t, ev, pid, op, kw in events]
    (tmp_path / "mdev-hooks.log").write_text("\n".join([*lines, '{"cut by the power-off']) + "\n")
    return tmp_path


def test_timeline_in_time_order_with_the_verdict(timeline: ModuleType, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert timeline.main([str(_guest_out(tmp_path))]) == 0
    out = capsys.readouterr().out
    stamp = r"^ *[+-][0-9.]+ s  "
    rows = [re.sub(stamp, "", line) for line in out.splitlines() if re.match(stamp, line)]
    assert rows == [
        "virsh start demo-mtty",
        f"  libvirtd runs {INSTALLED_HOOK} demo-mtty prepare begin",
        f"    hook pid 300: prepare, managed devices ['{U1}']",
        f"    created mdev {U1} on mtty, type mtty-2: available_instances 12 -> 11",
        "    hook pid 300: prepare done in 612.5 ms",
        f"  libvirtd runs {INSTALLED_HOOK} demo-mtty start begin",
        f"  libvirtd runs {INSTALLED_HOOK} demo-mtty started begin",
        "virsh start returned 0",
        f"virsh domstate demo-mtty: running; qemu pid 812 has sysfsdev=/sys/bus/mdev/devices/{U1}",
        "virsh destroy demo-mtty",
        f"  libvirtd runs {INSTALLED_HOOK} demo-mtty stopped end",
        f"  libvirtd runs {INSTALLED_HOOK} demo-mtty release end",
        f"    hook pid 301: release, managed devices ['{U1}']",
        f"    removed mdev {U1}: available_instances back to 12",
        "virsh destroy returned 0",
    ]
    assert "   +2.500 s      created mdev" in out  # each step's time since virsh start
    assert "mdev-hooks: behaved as designed" in out and "12 -> 11 -> 12" in out


@pytest.mark.parametrize(("kw", "why"), [
    ({"removed": False, "gone": "no"}, "mdev.removed"),
    ({"sysfsdev": "sysfsdev=/sys/bus/mdev/devices/other"}, "no sysfsdev="),
])
def test_timeline_says_what_went_wrong(timeline: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       kw: dict[str, object], why: str) -> None:
    assert timeline.main([str(_guest_out(tmp_path, **kw))]) == 1  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "mdev-hooks: NOT as designed: " in out and why in out and "behaved as designed" not in out


def test_timeline_runs_as_demo_real_runs_it(tmp_path: Path) -> None:
    """scripts/demo-real runs the script by its path, outside pytest's pythonpath: its own imports must resolve."""
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "demo_timeline.py"), str(_guest_out(tmp_path))],
                       capture_output=True, text=True, timeout=60, cwd="/", check=False,
                       env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    assert r.returncode == 0, r.stderr
    assert "behaved as designed" in r.stdout and "Traceback" not in r.stderr


def _fake_image(tmp_path: Path) -> dict[str, str]:
    """An image directory no qemu can boot and a .deb that is never installed: enough to reach the boot step."""
    img = tmp_path / "img"
    img.mkdir()
    for f in ("image.ext4", "vmlinuz", "initrd.img"):
        (img / f).write_bytes(b"not a kernel\n")
    (img / "kernel-version").write_text("6.12.0-fake\n")
    deb = tmp_path / "mdev-hooks_0_all.deb"
    deb.write_bytes(b"not a deb\n")
    return {"DEMO_IMG": str(img), "DEMO_DEB": str(deb), "DEMO_TIMEOUT": "120"}


def _works() -> set[Path]:
    return set(Path("/tmp").glob("mdev-hooks-demo-real.*"))


def _demo_qemus() -> list[str]:
    r = subprocess.run(["pgrep", "-f", "qemu-system-x86_64 -name mdev-hooks-demo-"], capture_output=True, text=True,
                       check=False)
    return r.stdout.split()


ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="scripts/demo-real runs as root only")


@pytest.mark.root
@ROOT
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86 (scripts/setup)")
def test_a_failing_step_is_named_with_its_log_and_cleaned_up(tmp_path: Path) -> None:
    before = _works()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **_fake_image(tmp_path)}
    r = subprocess.run(["bash", str(REPO / "scripts" / "demo-real")], capture_output=True, text=True, timeout=120,
                       check=False, env=env)
    new = _works() - before
    try:
        assert r.returncode == 1, r.stderr
        assert "demo --real: FAILED at step: in the guest: before the demo started (boot)" in r.stderr
        log = re.search(r"demo --real: the log to read: (\S+)", r.stderr)
        assert log and Path(log[1]).read_text().strip(), r.stderr  # qemu's own error, kept for the user
        assert [p.name for p in new] == [Path(log[1]).parents[1].name]
        assert not _demo_qemus()
    finally:
        for p in new:
            shutil.rmtree(p)


@pytest.mark.root
@ROOT
def test_sigint_during_the_boot_stops_qemu_and_cleans_up(tmp_path: Path) -> None:
    """Ctrl-C mid-boot: the qemu it started is stopped and the work directory removed. The stand-in qemu never
    boots and, started in the background by bash, ignores SIGINT: the cleanup must stop it (the real qemu also ends
    on SIGINT by itself; a run with the real guest interrupted this way left no qemu either)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    started = tmp_path / "qemu.started"
    (fake / "qemu-system-x86_64").write_text(f"#!/usr/bin/env python3\nimport time\nopen('{started}', 'w').close()\n"
                                             "time.sleep(300)\n")
    (fake / "qemu-system-x86_64").chmod(0o755)
    (fake / "dpkg-query").write_text("#!/bin/sh\necho installed\n")  # apt_install: nothing to install
    (fake / "dpkg-query").chmod(0o755)
    before = _works()
    env = {"PATH": f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin", **_fake_image(tmp_path)}
    # its own process group, signalled as a whole: what Ctrl-C in a terminal does
    p = subprocess.Popen(["bash", str(REPO / "scripts" / "demo-real")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        for _ in range(600):
            if started.exists() or p.poll() is not None:
                break
            time.sleep(0.1)
        assert started.exists() and _demo_qemus(), "the stand-in qemu never started"
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "demo --real: interrupted during: boot the trixie guest" in err
    assert "stopping the guest (qemu pid" in err and "demo --real: cleaned up" in out
    assert not _demo_qemus()
    assert _works() == before
