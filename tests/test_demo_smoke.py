"""scripts/demo without libvirtd: the wrapper's arguments, the verdict's exit status, the domain made for a profile
without an example, the lab's daemon-log helpers it reads libvirtd with. The demo itself (real libvirtd, /etc) is run
by hand: `bash scripts/demo --no-setup`."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fakesysfs.harness import FakeSysfs
from support.hookrun import REPO

U = "4b20d080-1b54-4048-85b3-a6a62d165c01"
VFIO_ERR = ("error: Failed to start domain 'gvtg-desktop'\n"
            "error: unsupported configuration: Mediated host device assignment requires VFIO support\n")


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mdev_hooks_demo", REPO / "scripts" / "demo.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _wrapper(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REPO / "scripts" / "demo"), *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, check=False)


def test_wrapper_help_and_bad_arguments_run_nothing() -> None:
    r = _wrapper("-h")
    assert r.returncode == 0 and "bash scripts/demo [--profile NAME] [--no-setup] [--keep]" in r.stdout
    assert "==>" not in r.stdout
    r = _wrapper("--no-setup", "--bogus")
    assert r.returncode == 2 and "unknown argument --bogus" in r.stderr
    r = _wrapper("--profile")
    assert r.returncode == 2 and "--profile needs a name" in r.stderr


def _entry(event: str, t: str, **kw: Any) -> dict[str, Any]:
    return {"event": event, "timestamp": f"2026-12-02T07:00:{t}Z", "domain": "gvtg-desktop", **kw}


def _verdict(demo: ModuleType, rc: int, err: str, journal: list[dict[str, Any]], after: int = 8,
             left: bool = False) -> int:
    dom = demo.Domain(Path("x.xml"), "gvtg-desktop", demo.lvlab.Mdev(U, "0000:00:02.0", "i915-GVTg_V5_4"))
    start = demo.lvlab.Run(["virsh", "start", "gvtg-desktop"], rc, "", err, 0.5)
    hook = [_entry("hook.invoked", "01.000", op="prepare", pid=1),
            _entry("mdev.created", "01.100", mdev=U, available_instances=7),
            _entry("hook.done", "01.200", op="prepare"),
            _entry("hook.invoked", "01.300", op="release", pid=2),
            _entry("mdev.removed", "01.400", mdev=U, available_instances=8)]
    t0 = 1796194800.0  # 2026-12-02T07:00:00Z
    return int(demo.timeline(dom, start, t0, t0 + 2, hook, [], journal, 8, after, left))


OK = [{"op": "create", "uuid": U, "result": "ok"}, {"op": "remove", "uuid": U, "result": "ok"}]


@pytest.mark.parametrize(("rc", "err", "journal", "after", "left", "status"), [
    (1, VFIO_ERR, OK, 8, False, 0),  # this host: no VFIO, the hook did its part
    (0, "", OK, 8, False, 0),  # a host with VFIO: started and destroyed
    (1, VFIO_ERR, OK[:1], 7, True, 1),  # never removed
    (1, VFIO_ERR, [], 8, False, 1),  # never created
    (1, "error: Failed to start domain 'gvtg-desktop'\nerror: something else\n", OK, 8, False, 1),
])
def test_verdict_exit_status(demo: ModuleType, capsys: pytest.CaptureFixture[str], rc: int, err: str,
                             journal: list[dict[str, Any]], after: int, left: bool, status: int) -> None:
    assert _verdict(demo, rc, err, journal, after, left) == status
    out = capsys.readouterr().out
    assert ("behaved as designed" in out) == (journal == OK and not left)
    assert ("no VFIO" in out) == ("VFIO" in err)


def test_domain_for_a_profile_without_example(demo: ModuleType, fakesysfs: Callable[..., FakeSysfs],
                                              tmp_path: Path) -> None:
    fs = fakesysfs("mtty-sample")
    dom = demo.domain_for("mtty-sample", fs, tmp_path)
    assert dom.name == "demo-mtty-sample" and dom.xml.parent == tmp_path
    assert (Path(fs.root) / "class/mdev_bus" / dom.mdev.parent / "mdev_supported_types" / dom.mdev.type).is_dir()
    assert dom.mdev.uuid == U  # the template's device UUID: the hostdev and the metadata still agree
    assert dom.xml.read_text().count(U) == 2


def test_daemon_log_helpers_the_demo_uses(demo: ModuleType, tmp_path: Path) -> None:
    lvlab = demo.lvlab
    log = tmp_path / "libvirtd-hooks.log"
    log.write_text(
        "2026-12-02 07:44:01.100+0000: 26242: debug : virHookCheck:163 : Found hook script /etc/libvirt/hooks/qemu\n"
        "2026-12-02 07:44:02.250+0000: 26242: debug : virRunScript:279 : Calling hook /etc/libvirt/hooks/qemu "
        "id=gvtg-desktop op=prepare subop=begin extra=-\n"
        "2026-12-02 07:44:02.900+0000: 26245: debug : virRunScript:279 : Calling hook /etc/libvirt/hooks/qemu "
        "id=other op=prepare subop=begin extra=-\n")
    calls = lvlab.DaemonLog(log).timed_calls(0, "gvtg-desktop")
    assert [(c.hook, c.op, c.subop, c.extra) for c in calls] == [
        (Path("/etc/libvirt/hooks/qemu"), "prepare", "begin", "-")]
    assert calls[0].time == pytest.approx(1796197442.25)
    # libvirt shows a filter set as 1:util.hook as 1:*util.hook*: what is saved must set the same filter again
    assert lvlab.DaemonLog.unwrap_filters("1:*util.hook* 3:+*remote* ") == "1:util.hook 3:+remote"
    assert lvlab.DaemonLog.unwrap_filters("") == ""
