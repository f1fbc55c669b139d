#!/usr/bin/env python3
"""A stand-in for `virsh` in the CLI tests (the real one is exercised by tests/libvirt/).

State lives in $FAKE_VIRSH_DIR: `running` (one domain UUID a line: `list --uuid`), `domains/*.xml` (served by
`dumpxml`, written by `define`), `calls.jsonl` (every argv, for the test to check), and `broken` (if it exists,
every command fails as when libvirtd is unreachable).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path


def fail(msg: str) -> int:
    sys.stderr.write(f"error: {msg}\n")
    return 1


def find(domains: Path, key: str) -> Path | None:
    for path in sorted(domains.glob("*.xml")):
        text = path.read_text()
        name = re.search(r"<name>([^<]*)</name>", text)
        uuid = re.search(r"<uuid>([^<]*)</uuid>", text)
        if key in ((name.group(1) if name else ""), (uuid.group(1).lower() if uuid else "")):
            return path
    return None


def main(argv: list[str]) -> int:
    state = Path(os.environ["FAKE_VIRSH_DIR"])
    with (state / "calls.jsonl").open("a") as f:
        f.write(json.dumps(argv) + "\n")
    args = list(argv)
    if args[:1] == ["-c"]:
        args = args[2:]
    if (state / "broken").exists():
        return fail("failed to connect to the hypervisor")
    domains = state / "domains"
    if args == ["list", "--uuid"]:
        running = state / "running"
        text = running.read_text() if running.exists() else ""
        sys.stdout.write("".join(f"{line.strip()}\n" for line in text.splitlines() if line.strip()) + "\n")
        return 0
    if args[:1] == ["dumpxml"]:
        path = find(domains, args[-1].lower() if re.fullmatch(r"[0-9a-fA-F-]{36}", args[-1]) else args[-1])
        if path is None:
            return fail(f"failed to get domain '{args[-1]}'")
        sys.stdout.write(path.read_text())
        return 0
    if args[:1] == ["define"] and len(args) == 2:
        text = Path(args[1]).read_text()
        name = re.search(r"<name>([^<]*)</name>", text)
        if name is None:
            return fail("XML error: missing domain name")
        domains.mkdir(exist_ok=True)
        (domains / f"{name.group(1)}.xml").write_text(text)
        print(f"Domain '{name.group(1)}' defined from {args[1]}\n")
        return 0
    return fail(f"fake virsh: unsupported command {args}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
