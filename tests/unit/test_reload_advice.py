"""Which libvirt daemon runs the qemu hooks (virtqemud on modular hosts such as RHEL 9 and Fedora, libvirtd on
Debian and Ubuntu, or none) and the reload `mdev-hooks install` prints for it: against fake /proc trees, and one
real process named virtqemud through the command itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mdev_hooks.admin.daemon import reload_advice, running_daemon


def proc(tmp_path: Path, *names: str) -> str:
    root = tmp_path / ("proc-" + "-".join(names))
    for pid, name in enumerate(("systemd", "sshd", *names), start=1):
        (root / str(pid)).mkdir(parents=True, exist_ok=True)
        (root / str(pid) / "comm").write_text(name + "\n")
    (root / "self").mkdir(exist_ok=True)  # not a pid
    return str(root)


@pytest.mark.parametrize("names,daemon", [(("libvirtd",), "libvirtd"), (("virtqemud", "virtlogd"), "virtqemud"),
                                          (("virtqemud", "libvirtd"), "virtqemud"), (("qemu-system-x86",), None)])
def test_running_daemon(tmp_path: Path, names: tuple[str, ...], daemon: str | None) -> None:
    assert running_daemon(proc(tmp_path, *names)) == daemon


@pytest.mark.parametrize("systemd,command", [(True, "systemctl reload virtqemud"),
                                             (False, "kill -HUP $(pidof virtqemud)")])
def test_a_new_hook_on_a_modular_host_says_how_to_reload_virtqemud(tmp_path: Path, systemd: bool,
                                                                   command: str) -> None:
    unit_dir = tmp_path / "run-systemd-system"
    if systemd:
        unit_dir.mkdir()
    advice = reload_advice("/etc/libvirt/hooks/qemu", True, [], proc(tmp_path, "virtqemud"), str(unit_dir))
    assert advice.startswith("libvirt must be told: virtqemud only finds a hook") and advice.endswith(command)


def test_libvirtd_host_and_no_daemon_and_known_hooks(tmp_path: Path) -> None:
    none = reload_advice("/h/qemu", True, [], proc(tmp_path), str(tmp_path / "nosystemd"))
    assert none.startswith("no libvirt daemon (libvirtd, virtqemud) is running")
    mono = reload_advice("/h/qemu", True, [], proc(tmp_path, "libvirtd"), str(tmp_path))
    assert mono.endswith("systemctl reload libvirtd")
    known = reload_advice("/h/qemu.d/50-mdev-hooks", True, ["/h/qemu"], proc(tmp_path, "libvirtd"), str(tmp_path))
    assert "already calls qemu hooks (/h/qemu exists)" in known and "nothing to reload" in known
    assert reload_advice("/h/qemu", False, [], proc(tmp_path, "libvirtd")).endswith("nothing to reload")


def test_install_names_a_real_virtqemud_process(tmp_path: Path) -> None:
    """A process whose name is virtqemud (a copy of sleep) is what `mdev-hooks install` finds, before libvirtd."""
    fake = tmp_path / "virtqemud"
    shutil.copy("/bin/sleep", fake)
    p = subprocess.Popen([str(fake), "60"])
    try:
        r = subprocess.run([sys.executable, "-m", "mdev_hooks.admin.cli", "install", "--no-extras", "--hooks-dir",
                            str(tmp_path / "hooks"), "--config-dir", str(tmp_path / "etc")],
                           capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        assert "virtqemud only finds a hook that did not exist when it started" in r.stdout, r.stdout
    finally:
        p.kill()
        p.wait()
