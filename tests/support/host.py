"""A host for the unit tier in one temporary directory: a materialized (static) sysfs, a config naming it and a
private ledger, lock and log path, a fake virsh; `mdev-hooks` commands run in this process.

Invariant: no root, no FUSE, no libvirt; every path the product is given lies under `tmp`, and the process
environment is the same after a run as before it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakesysfs.snapshot import materialize

from support.common import FAKE_VIRSH
from support.product import cli_main

CLAIM_TIME = 1_700_000_000.0  # a fixed time in claims this helper writes: outputs stay byte-stable


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@contextlib.contextmanager
def _environ(values: Mapping[str, str | None]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


class UnitHost:
    """UnitHost(tmp_path, ["intel-gvtg"], devices=[(uuid, parent, type)], available={...}, vgpus={...}, config=...)."""

    def __init__(self, tmp: Path, profiles: list[str], devices: Iterable[tuple[str, str, str]] = (), *,
                 available: Mapping[tuple[str, str], int] | None = None, vgpus: Mapping[str, str] | None = None,
                 config: str = "", read_only: bool = False, sysfs: Path | None = None) -> None:
        self.tmp = tmp
        self.read_only = False
        # sysfs: a tree materialized already (shared, read-only), instead of one written for this host
        self.sysfs = sysfs or materialize(profiles, tmp / "sys", devices, available=available, vgpus=vgpus)
        self.state_dir = tmp / "state"
        self.state_dir.mkdir(mode=0o700)
        self.config = tmp / "config.toml"
        self.virsh_dir = tmp / "virsh"
        (self.virsh_dir / "domains").mkdir(parents=True)
        self._xml_count = 0
        self.write_config(config)
        self.read_only = read_only  # shared between tests: config, ledger and virsh state stay as built

    def _writable(self) -> None:
        if self.read_only:
            raise RuntimeError("this host is shared between tests: build your own (make_host) to change it")

    def write_config(self, extra: str = "") -> None:
        """The config file: every path under tmp, plus `extra` TOML lines (policy, [parents] last)."""
        self._writable()
        t = self.tmp
        self.config.write_text(
            f'sysfs_root = "{self.sysfs}"\nstate_dir = "{self.state_dir}"\nlock_dir = "{t / "lock"}"\n'
            f'log_file = "{t / "hook.log"}"\nmdevctl_dir = "{t / "mdevctl.d"}"\n{extra}\n')

    def claim(self, key: str, domain_uuid: str, domain_name: str, parent: str, type_: str,
              state: str = "created", **more: Any) -> Path:
        """Write a ledger claim file as the hook writes it (the file format, not the product's class)."""
        self._writable()
        data: dict[str, Any] = {"mdev": key, "domain_uuid": domain_uuid, "domain_name": domain_name,
                                "parent": parent, "type": type_, "state": state, "pid": 0, "time": CLAIM_TIME,
                                "attrs": [], "pf": "", "kind": "mdev"}
        data.update(more)
        path = self.state_dir / f"{key}.json"
        path.write_text(json.dumps(data, sort_keys=True) + "\n")
        return path

    def running(self, *domain_uuids: str) -> None:
        """What the fake `virsh list --uuid` answers."""
        self._writable()
        (self.virsh_dir / "running").write_text("".join(u + "\n" for u in domain_uuids))

    def cli(self, *argv: str) -> Run:
        """`mdev-hooks --config CONFIG ARGV...` in this process; exit status, stdout, stderr."""
        out, err = io.StringIO(), io.StringIO()
        env = {"MDEV_HOOKS_VIRSH": f"{sys.executable} {FAKE_VIRSH}", "FAKE_VIRSH_DIR": str(self.virsh_dir),
               "MDEV_HOOKS_CONFIG": None, "MDEV_HOOKS_DRY_RUN": None}
        with _environ(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli_main(["--config", str(self.config), *argv])
            except SystemExit as e:  # argparse: usage error or --help
                code = e.code if isinstance(e.code, int) else 2
        return Run(code, out.getvalue(), err.getvalue())

    def plan(self, xml: bytes, *options: str) -> Run:
        """`mdev-hooks plan [OPTIONS] FILE` of this domain XML."""
        self._xml_count += 1
        path = self.tmp / f"domain{self._xml_count}.xml"
        path.write_bytes(xml)
        return self.cli("plan", *options, str(path))

    def paths(self) -> dict[str, str]:
        """Placeholders for the golden files: the run's temporary paths and the fake virsh command."""
        return {str(self.sysfs): "<SYSFS>", str(self.state_dir): "<STATE>", str(self.config): "<CONFIG>",
                str(self.tmp): "<TMP>", f"{sys.executable} {FAKE_VIRSH}": "<VIRSH>"}


MakeHost = Callable[..., UnitHost]  # the type of tests/unit's make_host fixture
