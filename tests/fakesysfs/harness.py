"""Run the fake in a subprocess for a test: start, wait for the mount, inspect, tear down."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from fakesysfs.journal import overlapping_creates, read_journal

TESTS_DIR = Path(__file__).resolve().parent.parent
START_TIMEOUT = 10.0


class FakeSysfs:
    """A mounted fake sysfs. `root` is what the hook gets as sysfs_root.

    FakeSysfs(["intel-gvtg", "nvidia-tesla-t4"], tmp_path) or FakeSysfs("mtty-sample", tmp_path,
    synthetic_parents=8, synthetic_instances=32); use as a context manager or call start()/stop().
    """

    def __init__(
        self,
        profiles: list[str] | str,
        workdir: Path | str,
        *,
        synthetic_parents: int = 0,
        synthetic_instances: int = 32,
        profiles_file: Path | None = None,
    ) -> None:
        self.profiles = [profiles] if isinstance(profiles, str) else list(profiles)
        self.workdir = Path(workdir)
        self.mountpoint = self.workdir / "sysfs"
        self.journal_path = self.workdir / "journal.jsonl"
        self.log_path = self.workdir / "fakesysfs.log"
        self.root = str(self.mountpoint)
        self.synthetic_parents = synthetic_parents
        self.synthetic_instances = synthetic_instances
        self.profiles_file = profiles_file  # another profiles.json (a test's own host), None: the fake's own
        self.proc: subprocess.Popen[bytes] | None = None

    # ---- life cycle --------------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "fakesysfs", self.root, "--journal", str(self.journal_path), "--foreground"]
        for p in self.profiles:
            cmd += ["--profile", p]
        if self.synthetic_parents:
            cmd += ["--synthetic-parents", str(self.synthetic_parents)]
            cmd += ["--synthetic-instances", str(self.synthetic_instances)]
        if self.profiles_file is not None:
            cmd += ["--profiles-file", str(self.profiles_file)]
        return cmd

    def start(self) -> FakeSysfs:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.journal_path.touch()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
        # stderr to a file, never a pipe: a full pipe would stall the FUSE daemon and every process using it
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not (os.path.ismount(self.root) and os.path.isdir(self.path("class/mdev_bus"))):
            rc = self.proc.poll()
            if rc is not None or time.monotonic() > deadline:
                self.stop()
                why = f"exited with {rc}" if rc is not None else f"not mounted after {START_TIMEOUT:.0f} s"
                raise RuntimeError(f"fakesysfs {why}: {self.log_path.read_text(errors='replace').strip()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if os.path.ismount(self.root):
            # release removes blocked by a `busy` rule; in a thread, so a wedged fake cannot hang the teardown
            t = threading.Thread(target=self._try_reset, daemon=True)
            t.start()
            t.join(2)
            done = subprocess.run(["fusermount3", "-u", self.root], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["fusermount3", "-uz", self.root], capture_output=True, check=False)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()  # aborts the FUSE connection: anything still blocked in it gets ENOTCONN
                proc.wait()

    def _try_reset(self) -> None:
        with contextlib.suppress(OSError):
            self.control(cmd="reset")

    def __enter__(self) -> FakeSysfs:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ---- access ------------------------------------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def create_path(self, parent: str, type_id: str) -> str:
        return self.path("class/mdev_bus", parent, "mdev_supported_types", type_id, "create")

    def remove_path(self, uuid: str) -> str:
        return self.path("bus/mdev/devices", uuid, "remove")

    def write(self, path: str, data: bytes | str) -> None:
        """One write() syscall, as the hook does it; a kernel error raises OSError. `path` may be relative."""
        fd = os.open(path if os.path.isabs(path) else self.path(path), os.O_WRONLY)
        try:
            os.write(fd, data.encode() if isinstance(data, str) else data)
        finally:
            os.close(fd)

    def read(self, path: str) -> str:
        with open(path if os.path.isabs(path) else self.path(path)) as f:
            return f.read()

    def control(self, **cmd: Any) -> None:
        """A command for the fake, e.g. control(cmd="delay", op="create", ms=100); errors raise OSError."""
        self.write(".fake-control", json.dumps(cmd))

    def create_external(self, parent: str, type_id: str, uuid: str) -> None:
        self.control(cmd="create_external", parent=parent, type=type_id, uuid=uuid)

    def remove_external(self, uuid: str) -> None:
        self.control(cmd="remove_external", uuid=uuid)

    def available(self, parent: str, type_id: str) -> int:
        return int(self.read(os.path.join(os.path.dirname(self.create_path(parent, type_id)), "available_instances")))

    def devices(self, include_transient: bool = False) -> dict[str, tuple[str, str]]:
        """{uuid: (parent, type)} of the mdevs in bus/mdev/devices, resolved like mdevctl does.

        A device still being created or being removed has no mdev_type link: left out unless include_transient,
        then its type is "".
        """
        found = {}
        base = self.path("bus/mdev/devices")
        for uuid in os.listdir(base):
            real = os.path.realpath(os.path.join(base, uuid))
            mdev_type = os.path.join(real, "mdev_type")
            try:  # a device may vanish between the check and the resolve (a concurrent remove)
                type_real = os.readlink(mdev_type) and os.path.realpath(mdev_type)
                os.stat(type_real)  # the link's target must exist (realpath(strict=True) needs Python 3.10)
            except OSError:
                type_real = ""
            if type_real:
                found[uuid] = (os.path.basename(os.path.dirname(real)), os.path.basename(type_real))
            elif include_transient and os.path.isdir(real):
                found[uuid] = (os.path.basename(os.path.dirname(real)), "")
        return found

    def journal(self) -> list[dict[str, Any]]:
        return read_journal(self.journal_path)

    def creates_overlapping_on_same_parent(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Pairs of successful user creates on one parent that ran at the same time; [] if the hook locks."""
        return overlapping_creates(self.journal())
