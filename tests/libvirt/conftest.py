"""The libvirt tier: the real system libvirtd (Debian's libvirt-daemon-system) calls the installed hook.

Needs root, libvirtd/virsh/qemu-system-x86 and /dev/fuse. Skipped (with the reason) only when libvirtd is not
installed, and never when CI=true: CI installs it with scripts/setup, so there a missing daemon is a failure.

Session: /etc/libvirt/hooks and /etc/mdev-hooks are saved and restored; the daemons are started if they are
not running and stopped at the end only if this session started them.
Module (`lab`, once per hook layout): the FUSE fake of mdev sysfs, /etc/mdev-hooks/config.toml pointing at it,
the hook installed as /etc/libvirt/hooks/qemu or /etc/libvirt/hooks/qemu.d/50-mdev-hooks, libvirtd reloaded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lvlab
import pytest
from support.hookrun import cannot_run

HERE = Path(__file__).resolve().parent
PROFILES = ["intel-gvtg", "mtty-sample", "nvidia-tesla-t4"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.libvirt)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if lvlab.EVIDENCE and (config.option.verbose > 0 or os.environ.get("MDEV_HOOKS_EVIDENCE")):
        terminalreporter.section("libvirt tier: what the fake's journal showed")
        for line in lvlab.EVIDENCE:
            terminalreporter.write_line(line)


def _not_installed() -> str | None:
    missing = [b for b in ("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64") if shutil.which(b) is None]
    if missing:
        return f"libvirt tier: {', '.join(missing)} not installed (run scripts/setup as root)"
    return None


@pytest.fixture(scope="session", autouse=True)
def libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    reason = _not_installed()
    if reason:
        cannot_run(reason)
    if os.geteuid() != 0:
        pytest.fail("libvirt tier: libvirtd is installed but the tier needs root (system daemon, /etc/libvirt)")
    if not os.path.exists("/dev/fuse"):
        pytest.fail("libvirt tier: /dev/fuse is missing (the fake mdev sysfs is a FUSE file system)")
    with lvlab.daemon_session(tmp_path_factory.mktemp("host-backup")):
        yield


@pytest.fixture(scope="module", params=["qemu", "qemu.d"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[lvlab.Lab]:
    layout: str = request.param
    with lvlab.open_lab(PROFILES, layout, tmp_path_factory.mktemp(f"lab-{layout}")) as lab:
        yield lab


@pytest.fixture
def config(lab: lvlab.Lab) -> Iterator[None]:
    """For tests that rewrite /etc/mdev-hooks/config.toml: the module's own config again afterwards."""
    yield
    lvlab.write_config(lab.fs.root, lab.tmp, nvidia_release_wait=0.5)


@pytest.fixture(autouse=True)
def _no_leftover_domains() -> Iterator[None]:
    yield
    lvlab.cleanup_test_domains()
