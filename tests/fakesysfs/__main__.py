"""python3 -m fakesysfs MOUNTPOINT --profile NAME [...] --journal FILE [--foreground]"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fakesysfs.journal import Journal
from fakesysfs.profiles import PROFILES_FILE, build_host, load_raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m fakesysfs", description="Mount a fake mdev sysfs (FUSE).")
    ap.add_argument("mountpoint")
    ap.add_argument("--profile", action="append", default=[], help="host profile; repeat to combine")
    ap.add_argument("--journal", required=True, type=Path, help="JSON-lines journal (outside the mount)")
    ap.add_argument("--foreground", action="store_true")
    ap.add_argument("--synthetic-parents", type=int, default=0, metavar="N", help="add parents synth0..synthN-1")
    ap.add_argument("--synthetic-instances", type=int, default=32, metavar="M", help="synth-1 instances per parent")
    ap.add_argument("--profiles-file", type=Path, default=PROFILES_FILE)
    ap.add_argument("--debug", action="store_true", help="log more to stderr")
    args = ap.parse_args(argv)
    if not args.profile and not args.synthetic_parents:
        ap.error("give at least one --profile or --synthetic-parents")
    try:
        host = build_host(args.profile, args.synthetic_parents, args.synthetic_instances, load_raw(args.profiles_file))
    except ValueError as e:
        ap.error(str(e))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="fakesysfs: %(message)s")

    # imported late: not needed for --help or argument errors
    from fakesysfs.fs import mount
    from fakesysfs.kernel import Kernel

    kernel = Kernel(host, Journal(args.journal))
    try:
        mount(kernel, args.mountpoint, foreground=args.foreground)
    finally:
        kernel.reset()
        kernel.journal.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
