"""The world a `mdev-hooks` command runs in during the FUSE-tier tests: the fake sysfs, the hook's config, a fake
virsh that records its calls, and example domain XML.

Invariant: everything lives under the test's tmp_path and the fake's mount; nothing on the host is touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from lxml import etree

from support.common import CLI, FAKE_VIRSH, REPO
from support.hookrun import HookEnv, mdev_xml


class World:
    """A fake sysfs, a hook config pointing at it, and a fake virsh: everything a CLI run needs."""

    def __init__(self, fs: Any, tmp: Path) -> None:
        self.fs = fs
        (tmp / "hook").mkdir(parents=True, exist_ok=True)
        self.hook = HookEnv(tmp / "hook", fs.root)
        self.virsh_dir = tmp / "virsh"
        (self.virsh_dir / "domains").mkdir(parents=True)

    def env(self, **more: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("MDEV_HOOKS_DRY_RUN", None)
        env.update(MDEV_HOOKS_CONFIG=str(self.hook.config), MDEV_HOOKS_VIRSH=f"{sys.executable} {FAKE_VIRSH}",
                   FAKE_VIRSH_DIR=str(self.virsh_dir))
        env.update(more)
        return env

    def cli(self, *args: str, stdin: bytes | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CLI), *args], input=stdin.decode() if stdin is not None else None,
                              capture_output=True, text=True, env=self.env(**env), timeout=120,
                              stdin=subprocess.DEVNULL if stdin is None else None)

    def prepare(self, name: str, dom: str, mdevs: list[tuple[str, str, str]]) -> None:
        r = self.hook.run(name, "prepare", "begin", mdev_xml(name, dom, mdevs))
        assert r.returncode == 0, r.stderr

    def running(self, *uuids: str) -> None:
        (self.virsh_dir / "running").write_text("".join(u + "\n" for u in uuids))

    def calls(self) -> list[list[str]]:
        path = self.virsh_dir / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def creates(self) -> list[str]:
        return [e["uuid"] for e in self.fs.journal() if e["op"] == "create" and e.get("actor") != "external"]

    def removes(self) -> list[str]:
        return [e["uuid"] for e in self.fs.journal() if e["op"] == "remove" and e.get("actor") != "external"]


def write_xml(tmp: Path, xml: bytes, name: str = "dom.xml") -> str:
    path = tmp / name
    path.write_bytes(xml)
    return str(path)


PLAIN = (REPO / "examples" / "plain.xml").read_bytes().replace(
    b"<devices>", b"<devices>\n    <graphics type='vnc' passwd='s3cret'/>\n    <!-- keep me -->")


def canonical(xml: bytes) -> bytes:
    root = etree.fromstring(xml, etree.XMLParser(remove_blank_text=True))
    return etree.tostring(root, method="c14n")
