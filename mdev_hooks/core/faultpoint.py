"""Test-only crash points: `MDEV_HOOKS_TEST_KILL_AT=<step>[:<n>]` SIGKILLs the hook the n-th time (default 1st)
it reaches <step>, so tests can prove that a hook killed at any step leaves enough for `release` to clean up.

Invariant: inert in production: libvirt runs hooks with a scrubbed environment (LC_ALL, PATH, HOME only), so the
variable cannot reach a hook started by libvirtd; it is only looked at on the slow path (a call about a managed
mdev), and costs one dict lookup per step. Steps: locked, intent_written, created, verified, attr_written,
ledger_updated, rolled_back (prepare) and release_locked, removed (release).
"""

import os
import signal

ENV = "MDEV_HOOKS_TEST_KILL_AT"
_seen: dict[str, int] = {}


def reached(step: str) -> None:
    want = os.environ.get(ENV)
    if not want:
        return
    name, _, nth = want.partition(":")
    if name != step:
        return
    _seen[step] = _seen.get(step, 0) + 1
    if _seen[step] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
