"""`mdev-hooks ledger downgrade --format 1`: rewrite every claim in the format mdev-hooks 0.2 reads, so a downgrade
while VMs run leaves the older version a ledger it can release from.

Invariant: a claim file is only ever replaced whole (rename of a fully written temp file), under the lock of the
parent it is used under, and only when format 1 holds everything the claim says; if one claim cannot be
represented, nothing is rewritten and one line names it.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from mdev_hooks.admin import common
from mdev_hooks.core.env import Env
from mdev_hooks.core.ledger import Claim, CorruptClaim, from_json
from mdev_hooks.core.locks import parent_locks
from mdev_hooks.core.sriov import lock_name
from mdev_hooks.errors import HookError

# format 1 as 0.2's reader takes it: it builds its Claim(**data), so any other field makes the claim "corrupt"
FORMAT1_FIELDS = ("key", "domain_uuid", "domain_name", "parent", "type", "state", "pid", "time", "attrs", "pf", "kind")
FORMAT1_VALUES = {"state": ("intent", "created", "adopted"), "kind": ("mdev", "nvidia-vf")}
# fields of a later format that format 1 can do without, and why
DROPPABLE = {
    "format": "format 1 is the absence of `format`",
    "pool": "0.2 releases the pool member the claim records as `parent`",
}


def _refuse(path: str, data: dict[str, Any], what: str) -> HookError:
    """The one line naming a claim format 1 cannot hold, and why."""
    claim = f"{data.get('kind', 'mdev')} {data.get('key', data.get('mdev'))} of domain {data.get('domain_name') or '?'}"
    return HookError(f"cannot rewrite the ledger in format 1: claim {path} ({claim} {data.get('domain_uuid')}) "
                     f"{what}; nothing was rewritten")


def as_format1(path: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """The claim's format-1 form, None if it is format 1 already; HookError naming the claim and the field format 1
    cannot hold (a ValueError/TypeError if this version cannot read it at all)."""
    for name, allowed in FORMAT1_VALUES.items():
        if name in data and str(data[name]) not in allowed:
            raise _refuse(path, data, f"has {name} {str(data[name])!r}, which mdev-hooks 0.2 does not know")
    claim = from_json(data)
    if "format" not in data and set(data) <= {*FORMAT1_FIELDS, "mdev"}:
        return None
    values = {**{("key" if k == "mdev" else k): v for k, v in data.items()}, **asdict(claim)}
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in FORMAT1_FIELDS:
            out[name] = str(value) if name in FORMAT1_VALUES else list(value) if name == "attrs" else value
        elif name not in DROPPABLE and value not in ("", None, [], (), {}):
            raise _refuse(path, data, f"has {name}={value!r}, which format 1 cannot hold")
    return out


def downgrade(env: Env, dry_run: bool = False) -> tuple[list[str], list[str]]:
    """Rewrite every claim in format 1: all of them are checked first (a refusal rewrites none), then each is
    re-read and rewritten under its parent's lock. Returns (lines for the user, warnings)."""
    ledger = env.ledger
    ledger.check_dir()
    todo: list[tuple[str, Claim]] = []
    warnings: list[str] = []
    kept = 0
    for key in ledger.claim_keys():
        path = ledger.path(key)
        try:
            data = ledger.read(key)
            if data is None:
                continue
            if as_format1(path, data) is None:
                kept += 1
                continue
            claim = from_json(data)
        except CorruptClaim as e:
            warnings.append(f"{e} (left as it is: no version can read it)")
            continue
        except (ValueError, TypeError, AttributeError) as e:
            warnings.append(f"claim {path} is corrupt ({e.__class__.__name__}); left as it is: no version can read it")
            continue
        todo.append((key, claim))
    done = 0
    for key, claim in todo:
        if dry_run:
            done += 1
            continue
        lock = claim.pf or lock_name(env, claim.parent)
        with parent_locks(env.cfg.lock_dir, [lock], env.cfg.lock_timeout, env.log):
            data = ledger.read(key)  # again, under the lock: the hook may have changed or dropped it meanwhile
            new = as_format1(ledger.path(key), data) if data is not None else None
            if new is not None:
                ledger.rewrite(key, new)
                done += 1
    verb = "would rewrite" if dry_run else "rewrote"
    lines = [f"{verb} {done} claim(s) in format 1, {kept} already were: mdev-hooks 0.2 can read the ledger "
             f"({ledger.dir})"]
    return lines, warnings


def cmd_ledger(args: argparse.Namespace) -> int:
    env = common.make_env(args)
    lines, warnings = downgrade(env, args.dry_run)
    for line in lines:
        print(line)
    for line in warnings:
        print(f"warning: {line}")
    return common.OK


def register(command: Any) -> None:
    p = command("ledger", cmd_ledger, "rewrite the ledger's claims for an older mdev-hooks (before a downgrade)",
                "  mdev-hooks ledger downgrade --format 1 --dry-run\n  mdev-hooks ledger downgrade --format 1",
                "Rewrite every claim of the ownership ledger (state_dir) in an older format, each atomically and "
                "under its parent's lock, so that an older mdev-hooks can still remove the devices of VMs that "
                "run across a downgrade. Format 1 is what mdev-hooks 0.2 reads; the Debian package runs this "
                "before a downgrade to 0.2. Refuses (exit 1, nothing rewritten) with one line naming a claim that "
                "format 1 cannot hold.")
    p.add_argument("action", choices=["downgrade"], help="downgrade: rewrite every claim in --format")
    p.add_argument("--format", type=int, choices=[1], required=True, dest="ledger_format",
                   help="the format to write: 1 (what mdev-hooks 0.2 reads)")
    p.add_argument("--dry-run", action="store_true", help="only check and say what would be rewritten")
