"""A throwaway Debian 12 chroot for installing the .deb with the real apt and dpkg.

The base system (debootstrap minbase + the package's dependencies, so that `apt-get install ./x.deb` needs no
network) is built once and cached as a tarball in CACHE; every use unpacks a fresh copy. Commands run inside
`unshare --pid --fork --mount-proc` + chroot: the chroot sees only its own processes, so a maintainer script can
never signal the host's libvirtd, and /run/systemd/system is absent there (no systemd), as in a container.

`python3 tests/package/debchroot.py` builds the cache ahead of the tests.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile

CACHE = os.environ.get("MDEV_HOOKS_DEB_TEST_CACHE", "/var/cache/mdev-hooks-deb-test")
SUITE = "bookworm"
# what the package depends on, and what the tests use inside the chroot
PACKAGES = ["python3", "python3-lxml", "python3-filelock", "python3-structlog", "procps"]


def mirror() -> str:
    """The host's Debian mirror (its apt sources), else deb.debian.org."""
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        for m in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.M):
            uri = m.group(1)
            if "security" not in uri and uri.startswith(("http://", "https://")):
                return uri
    return "http://deb.debian.org/debian"


def base_tarball() -> str:
    key = hashlib.sha256(" ".join([SUITE, *PACKAGES]).encode()).hexdigest()[:12]
    path = os.path.join(CACHE, f"{SUITE}-minbase-{key}.tar")
    if os.path.exists(path):
        return path
    if shutil.which("debootstrap") is None:
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", "debootstrap"],
                       check=True, stdout=subprocess.DEVNULL)
    os.makedirs(CACHE, exist_ok=True)
    root = os.path.join(CACHE, f"build-{os.getpid()}")
    shutil.rmtree(root, ignore_errors=True)
    try:
        log = os.path.join(CACHE, "debootstrap.log")
        with open(log, "wb") as out:
            proc = subprocess.run(["nice", "-n", "5", "debootstrap", "--variant=minbase", "--components=main",
                                   "--include=" + ",".join(PACKAGES), SUITE, root, mirror()],
                                  stdout=out, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"debootstrap failed (exit {proc.returncode}); log: {log}")
        # the apt lists let `apt-get install ./x.deb` resolve dependencies without a network
        subprocess.run(["chroot", root, "apt-get", "clean"], check=True)
        tmp = path + ".tmp"
        with tarfile.open(tmp, "w") as tar:
            tar.add(root, arcname=".")
        os.rename(tmp, path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return path


def _default_sighup() -> None:
    """SIGHUP back to its default in the chroot's processes.

    A test run started under `nohup` ignores SIGHUP, and a shell cannot trap a signal ignored at its entry, so the
    stand-in daemons would never log the postinst's reload."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


class Chroot:
    """A fresh copy of the cached base system under `root`."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)
        subprocess.run(["tar", "-xf", base_tarball(), "-C", root], check=True)

    def path(self, inside: str) -> str:
        return os.path.join(self.root, inside.lstrip("/"))

    def run(self, script: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run a shell script in the chroot (own PID namespace and /proc); stdout and stderr together."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
               "HOME": "/root"}
        proc = subprocess.run(["unshare", "--pid", "--fork", "--mount", f"--mount-proc={self.path('/proc')}",
                               "chroot", self.root, "/bin/sh", "-c", script],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                              timeout=timeout, check=False, preexec_fn=_default_sighup)
        if check and proc.returncode != 0:
            raise AssertionError(f"in the chroot, exit {proc.returncode}:\n{script}\n--- output:\n{proc.stdout}")
        return proc

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":
    print(base_tarball())
    sys.exit(0)
