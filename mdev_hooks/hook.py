"""The libvirt qemu hook's entry: argv ``DOMAIN OP SUBOP EXTRA`` and the domain XML on stdin, dispatched to
prepare, release or the incoming check; every failure becomes one line on stderr.

Invariant: every operation of every domain runs this, so nothing beyond ``sys``/``os`` (and the package's empty
``__init__``) is imported until the call concerns a managed device; nothing is ever written to stdout (for
migrate/restore, stdout would replace the domain XML).
"""

import os
import sys

from mdev_hooks import NS as _NS
from mdev_hooks import PREFIX

# `typing` costs more to import than this whole module: only the type checker sees it (mypy treats any
# TYPE_CHECKING as true)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

# migrate/restore begin: the destination checks, read-only, that prepare will get every managed mdev
ACTIVE = {("prepare", "begin"), ("release", "end"), ("migrate", "begin"), ("restore", "begin")}
NS = _NS.encode()
MAX_READ = (16 << 20) + 1


def mentions_mdev(xml: bytes) -> bool:
    """False only if the domain certainly has no managed mdev and no metadata of ours: decided by a byte search,
    without parsing (every VM operation of every domain runs the hook).

    True if the XML names our namespace, has a DTD (the parser refuses it, failing prepare as it always did), or
    has a ``<hostdev`` start tag that says ``mdev`` and ``yes`` or holds a reference (``&...;``) that could spell
    them. A start tag cannot contain ``<``, so the text up to the next ``<`` holds all of it. This never misses a
    hostdev the parser would see as ``type='mdev' managed='yes'``; a false alarm only costs the parse.
    """
    if b"mdev" not in xml and b"&" not in xml:
        return False  # the common case, in two passes over the bytes (NS contains "mdev")
    if NS in xml:
        return True
    if b"'mdev'" not in xml and b'"mdev"' not in xml and b"&" not in xml:
        return False
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        return True
    start = xml.find(b"<hostdev")
    while start >= 0:
        end = xml.find(b"<", start + 1)
        tag = xml[start:end] if end >= 0 else xml[start:]
        if b"&" in tag or (b"mdev" in tag and b"yes" in tag):
            return True
        if end < 0:
            break
        start = xml.find(b"<hostdev", end)
    return False


def _fail(message: str) -> int:
    # ONE line: libvirt shows it verbatim after "unexpected exit status 1: "
    line = " ".join(message.split())
    try:
        sys.stderr.write(PREFIX + line + "\n")
        sys.stderr.flush()
    except OSError:
        pass
    return 1


def main(argv: "list[str] | None" = None, stdin: "BinaryIO | None" = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or (args[1], args[2]) not in ACTIVE:
        return 0  # every other operation, known or unknown, is none of our business
    data = (stdin or sys.stdin.buffer).read(MAX_READ)
    if not mentions_mdev(data):
        return 0
    import gc

    # The hook is a short-lived process that makes next to no cyclic garbage: the collector would only run during
    # the imports (some 50 passes over lxml/structlog/filelock's objects, ~10% of their cost) and free nothing.
    # Restored after, for callers that run main() in their own process (tests).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return run(args[0], args[1], data)
    finally:
        if enabled:
            gc.enable()


def run(name: str, op: str, data: bytes) -> int:
    """The slow path: config, log, parse, then prepare, release or the incoming check (migrate/restore)."""
    import time

    from mdev_hooks.errors import HookError

    t0 = time.monotonic()
    log = None
    try:
        # inside the try: a broken install (lxml, structlog or filelock missing) is one line, not a traceback
        from mdev_hooks import config

        cfg = config.load()
        from mdev_hooks import domain as dom
        from mdev_hooks import log as logsetup

        log = logsetup.setup(cfg.log_file, domain=name, op=op, pid=os.getpid(), dry_run=cfg.dry_run)
        from mdev_hooks import mdevctl
        from mdev_hooks.core import plan
        from mdev_hooks.core.env import Env
        from mdev_hooks.core.kinds import kind_of

        env = Env.from_config(cfg, log)
        try:
            parsed = plan.resolve(dom.parse(data, *mdevctl.lookup(cfg.mdevctl_dir, log)), env)
        except HookError as e:
            if op != "release":
                raise
            # release works from the ledger: a domain whose metadata was edited while it ran still gets its
            # devices removed (only an unparseable XML or domain UUID stops it)
            log.warning("release.xml_incomplete", error=str(e))
            parsed = dom.Domain(name=name, uuid=dom.domain_uuid(dom.parse_xml(data)))
        log = log.bind(domain_uuid=parsed.uuid)
        env = env.with_log(log)
        log.info("hook.invoked", mdevs=[m.key for m in parsed.devices])
        for m in parsed.unused:
            log.warning("metadata.unused", mdev=m.key, parent=m.parent, type=m.type, kind=m.kind.value,
                        reason=kind_of(m.kind).unused_reason)
        for m in parsed.devices:
            for path in mdevctl.shadowed(cfg.mdevctl_dir, m):
                log.info("mdev.mdevctl_ignored", mdev=m.key, path=path, reason="the domain's metadata wins")
        if op == "prepare":
            from mdev_hooks.core.prepare import prepare

            prepare(parsed, env)
        elif op in ("migrate", "restore"):
            plan.check_incoming(parsed, env, op)
        else:
            from mdev_hooks.core.release import release

            release(parsed.uuid, env, parsed.devices)
    except HookError as e:
        if log is not None:
            log.error("hook.failed", error=str(e), duration_ms=round((time.monotonic() - t0) * 1000, 2))
        return _fail(str(e))
    except Exception as e:
        # never a traceback as the user's error: the full one goes to the log file
        if log is not None:
            log.exception("hook.crashed", exc_info=True)  # structlog < 20.2 sets no exc_info itself
        return _fail(f"internal error during {op} of domain {name}: {e.__class__.__name__}: {e} (details in the log)")
    log.info("hook.done", duration_ms=round((time.monotonic() - t0) * 1000, 2))
    return 0
