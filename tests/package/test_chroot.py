"""The .deb installed, removed and purged with the real apt and dpkg in a throwaway Debian 12 chroot.

The chroot has no systemd and its own PID namespace: the maintainer scripts take their no-systemd paths
(`kill -HUP` of the pid in /run/<daemon>.pid). A "libvirt daemon" there is a shell script named libvirtd or
virtqemud that records the SIGHUPs it gets; it stands in for the daemon, whose reload itself is shown against the
real libvirtd by tests/libvirt/test_libvirt_reload.py.
"""

from __future__ import annotations

import json
import os

import pytest
from debchroot import Chroot
from debpkg import Built

pytestmark = pytest.mark.package

INSTALLED_HOOK = "/etc/libvirt/hooks/qemu.d/50-mdev-hooks"
VM1 = "5909df77-0544-4c25-b292-6027c2468ce1"
VM2 = "0f6e4a1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
MDEV1 = "4b20d080-1b54-4048-85b3-a6a62d165c01"
MDEV2 = "9a0c7c5e-3f0e-4d6b-9b8e-2c1d0f6a7e11"
VF = "0000:41:00.4"

INSTALL = "apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends /tmp/pkg/{deb}"
NO_DAEMON = (f"mdev-hooks: installed the libvirt hook {INSTALLED_HOOK}; "
             "no libvirt daemon (libvirtd, virtqemud) is running: "
             "it will find the hook when it starts")

# a stand-in libvirt daemon: its comm is its file name; it logs each SIGHUP
FAKE_DAEMON = r"""
cat >/usr/sbin/{name} <<'EOF'
#!/bin/sh
trap 'echo HUP >>/tmp/{name}.hup' HUP
while :; do sleep 1 & wait $!; done
EOF
chmod 755 /usr/sbin/{name}
/usr/sbin/{name} </dev/null >/dev/null 2>&1 &
echo $! >/run/{name}.pid
sleep 0.5
"""
# the fake daemon runs its trap only between its sleeps (up to a second later, more on a loaded machine): poll
WAIT_HUP = "for i in $(seq 75); do [ -s /tmp/{name}.hup ] && break; sleep 0.2; done; cat /tmp/{name}.hup"


def _install(chroot: Chroot, built: Built, before: str = "", after: str = "") -> str:
    return chroot.run(before + "\n" + INSTALL.format(deb=os.path.basename(built.deb)) + "\n" + after).stdout


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("mdev-hooks: ") or line.startswith("    ")]


def _claim(key: str, domain_name: str, domain_uuid: str, parent: str, type_: str, kind: str = "mdev") -> str:
    return json.dumps({"mdev": key, "domain_uuid": domain_uuid, "domain_name": domain_name, "parent": parent,
                       "type": type_, "state": "created", "pid": 1, "time": 0.0, "attrs": [], "pf": "",
                       "kind": kind})


def test_install_remove_purge(chroot: Chroot, built: Built) -> None:
    out = _install(chroot, built)
    assert NO_DAEMON in out.splitlines(), out

    # what the package put in place works inside the chroot (its own python3 and Debian's modules)
    check = chroot.run(f"""
        head -n1 {INSTALLED_HOOK}
        mdev-hooks --version
        out=$({INSTALLED_HOOK} vm1 prepare begin - </dev/null) && echo "hook exit 0, stdout [$out]"
        test -f /usr/share/man/man8/mdev-hooks.8.gz && test -f /usr/share/bash-completion/completions/mdev-hooks
        test -f /etc/logrotate.d/mdev-hooks && test -f /lib/systemd/system/libvirtd.service.d/mdev-hooks.conf
        dpkg-query -W -f='${{Conffiles}}\\n' mdev-hooks
    """).stdout
    # prepare: through the sh front to /usr/bin/python3 -I -S on dist-packages
    assert check.splitlines()[:3] == ["#!/bin/sh", f"mdev-hooks {built.version}",
                                      "hook exit 0, stdout []"], check
    assert INSTALLED_HOOK not in check.split("\n", 3)[3], "the hook must not be a conffile"

    # devices the hook created: two for a running domain (an mdev, a vGPU VF), one for a domain that stopped
    ledger = {f"{MDEV1}.json": _claim(MDEV1, "vm1", VM1, "0000:00:02.0", "i915-GVTg_V5_4"),
              f"{VF}.json": _claim(VF, "vm1", VM1, VF, "1414", kind="nvidia-vf"),
              f"{MDEV2}.json": _claim(MDEV2, "vm2", VM2, "mtty", "mtty-2")}
    setup = ["mkdir -p -m 700 /run/mdev-hooks /run/lock/mdev-hooks", "touch /run/lock/mdev-hooks/mtty.lock",
             "echo '{}' >/var/log/mdev-hooks.log; echo '{}' >/var/log/mdev-hooks.log.1",
             "echo x | gzip >/var/log/mdev-hooks.log.2.gz",
             # the host's virsh (the chroot has none): vm1 runs
             "cat >/usr/bin/virsh <<'EOF'\n#!/bin/sh\n"
             f"[ \"$*\" = \"-c qemu:///system list --uuid\" ] && printf '%s\\n\\n' {VM1}\nEOF",
             "chmod 755 /usr/bin/virsh"]
    setup += [f"cat >/run/mdev-hooks/{name} <<'EOF'\n{text}\nEOF" for name, text in ledger.items()]
    chroot.run("\n".join(setup))

    out = chroot.run("apt-get -o DPkg::Lock::Timeout=600 remove -y mdev-hooks").stdout
    assert _lines(out) == [
        f"mdev-hooks: removing the libvirt hook {INSTALLED_HOOK}; running VMs and their devices are left alone",
        "mdev-hooks: the ledger /run/mdev-hooks gives devices the hook created to these running domains; they and "
        "their devices are left alone:",
        f"    vm1 ({VM1}): NVIDIA vGPU type 1414 on VF {VF}",
        f"    vm1 ({VM1}): mdev {MDEV1} (type i915-GVTg_V5_4 on 0000:00:02.0)",
        "mdev-hooks: without the hook these devices are NOT removed when their domains stop. To clean them up: "
        "reinstall mdev-hooks and run `mdev-hooks gc` once the domains have stopped, or, after each domain has "
        "stopped, remove its devices by hand:",
        f"    echo 0 > /sys/bus/pci/devices/{VF}/nvidia/current_vgpu_type",
        f"    echo 1 > /sys/bus/mdev/devices/{MDEV1}/remove",
        "mdev-hooks: the ledger /run/mdev-hooks also names devices of domains that are not running (left behind; "
        "`mdev-hooks gc` would have removed them); remove them by hand:",
        f"    vm2 ({VM2}): echo 1 > /sys/bus/mdev/devices/{MDEV2}/remove",
    ], out
    for path in (INSTALLED_HOOK, "/usr/bin/mdev-hooks", "/usr/lib/python3/dist-packages/mdev_hooks",
                 "/usr/share/man/man8/mdev-hooks.8.gz", "/lib/systemd/system/libvirtd.service.d/mdev-hooks.conf"):
        assert not os.path.lexists(chroot.path(path)), f"apt remove left {path}"
    # the configuration stays until purge; the devices' claims and the logs are left alone
    assert os.path.exists(chroot.path("/etc/mdev-hooks/config.toml"))
    for name, text in ledger.items():
        with open(chroot.path(f"/run/mdev-hooks/{name}")) as f:
            assert f.read() == text + "\n"

    out = chroot.run("apt-get -o DPkg::Lock::Timeout=600 purge -y mdev-hooks").stdout
    assert _lines(out) == ["mdev-hooks: kept /run/mdev-hooks: the ledger still names 3 "
                           "device(s) the hook created (see the message of the removal); remove them by hand, then "
                           "this directory"], out
    assert not os.path.lexists(chroot.path("/run/lock/mdev-hooks")), "apt purge left 0.2's lock directory"
    for path in ("/etc/mdev-hooks", "/var/log/mdev-hooks.log", "/var/log/mdev-hooks.log.1",
                 "/var/log/mdev-hooks.log.2.gz", "/etc/logrotate.d/mdev-hooks"):
        assert not os.path.lexists(chroot.path(path)), f"apt purge left {path}"
    assert sorted(os.listdir(chroot.path("/run/mdev-hooks"))) == sorted(ledger)


def test_purge_leaves_nothing(chroot: Chroot, built: Built) -> None:
    _install(chroot, built)
    # what runs of the hook leave when no device is owned: lock files, a temp file of a killed run, the log
    chroot.run("mkdir -p -m 700 /run/mdev-hooks /run/lock/mdev-hooks; touch /run/lock/mdev-hooks/mtty.lock "
               "/run/lock/mdev-hooks/0000:00:02.0.lock /run/mdev-hooks/.x.123.456.tmp; "
               "echo '{}' >/var/log/mdev-hooks.log")
    out = chroot.run("apt-get -o DPkg::Lock::Timeout=600 purge -y mdev-hooks").stdout
    assert "mdev-hooks: the ledger /run/mdev-hooks names no device the hook created: nothing is left behind" in out
    left = chroot.run("find / -xdev \\( -path /proc -o -path /tmp/pkg \\) -prune -o -name '*mdev-hooks*' -print; "
                      "find / -xdev -path /proc -prune -o -name '*mdev_hooks*' -print; "
                      "dpkg -l | grep mdev-hooks || true").stdout
    assert left.strip() == "", f"purge left:\n{left}"


def test_reload_only_when_the_daemon_knew_no_hook(chroot: Chroot, built: Built) -> None:
    deb = os.path.basename(built.deb)
    # libvirtd runs and no qemu hook existed: reloaded
    out = _install(chroot, built, before=FAKE_DAEMON.format(name="libvirtd"), after=WAIT_HUP.format(name="libvirtd"))
    assert f"mdev-hooks: installed the libvirt hook {INSTALLED_HOOK} and reloaded libvirtd (kill -HUP $(cat " \
           "/run/libvirtd.pid)) so that it calls the hook; running VMs are not affected" in out.splitlines(), out
    assert out.splitlines()[-1] == "HUP", out

    # a reinstall (upgrade): the daemon already knows our hook
    out = chroot.run(FAKE_DAEMON.format(name="libvirtd") + f"\napt-get install -y --reinstall /tmp/pkg/{deb}\n"
                     "sleep 3; cat /tmp/libvirtd.hup 2>/dev/null | wc -l").stdout
    assert f"mdev-hooks: updated the libvirt hook {INSTALLED_HOOK}; libvirtd re-reads it on every call: not reloaded" \
        in out.splitlines(), out
    assert out.splitlines()[-1] == "1", "no second SIGHUP"

    # after a remove, another qemu hook exists: the daemon knew one, no reload; our hook is back (not a conffile)
    out = chroot.run("apt-get remove -y mdev-hooks\n"
                     "mkdir -p /etc/libvirt/hooks; printf '#!/bin/sh\\nexit 0\\n' >/etc/libvirt/hooks/qemu; "
                     "chmod 755 /etc/libvirt/hooks/qemu; rm -f /tmp/libvirtd.hup\n"
                     + FAKE_DAEMON.format(name="libvirtd") + f"\napt-get install -y /tmp/pkg/{deb}\n"
                     "sleep 3; test ! -e /tmp/libvirtd.hup && echo no-hup; head -n1 " + INSTALLED_HOOK).stdout
    assert f"mdev-hooks: installed the libvirt hook {INSTALLED_HOOK}; libvirtd already calls qemu hooks " \
           "(/etc/libvirt/hooks/qemu existed) and re-reads them on every call: not reloaded (if " \
           "/etc/libvirt/hooks/qemu was itself added after libvirtd started, run: kill -HUP $(cat " \
           "/run/libvirtd.pid))" in out.splitlines(), out
    assert out.splitlines()[-2:] == ["no-hup", "#!/bin/sh"], out

    # modular daemons: virtqemud is the one told
    out = chroot.run("apt-get purge -y mdev-hooks; rm -f /etc/libvirt/hooks/qemu\n"
                     + FAKE_DAEMON.format(name="virtqemud") + f"\napt-get install -y /tmp/pkg/{deb}\n"
                     + WAIT_HUP.format(name="virtqemud")).stdout
    assert f"mdev-hooks: installed the libvirt hook {INSTALLED_HOOK} and reloaded virtqemud (kill -HUP $(cat " \
           "/run/virtqemud.pid)) so that it calls the hook; running VMs are not affected" in out.splitlines(), out
    assert out.splitlines()[-1] == "HUP", out


def test_remove_without_libvirt_names_every_owner(chroot: Chroot, built: Built) -> None:
    """No virsh (or no daemon): which domains run is unknown, so every domain the ledger names is listed."""
    _install(chroot, built)
    chroot.run(f"mkdir -p -m 700 /run/mdev-hooks; cat >/run/mdev-hooks/{MDEV2}.json <<'EOF'\n"
               f"{_claim(MDEV2, 'vm2', VM2, 'mtty', 'mtty-2')}\nEOF")
    out = chroot.run("command -v virsh || echo no-virsh; apt-get -o DPkg::Lock::Timeout=600 remove -y mdev-hooks"
                     ).stdout
    assert "no-virsh" in out
    assert _lines(out)[1:3] == [
        "mdev-hooks: the ledger /run/mdev-hooks gives devices the hook created to these domains (libvirt could not "
        "be asked which are running); they and their devices are left alone:",
        f"    vm2 ({VM2}): mdev {MDEV2} (type mtty-2 on mtty)"], out
    assert os.path.exists(chroot.path(f"/run/mdev-hooks/{MDEV2}.json"))
