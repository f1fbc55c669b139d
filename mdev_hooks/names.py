"""Validation of the names that reach file paths: UUIDs, parents, types (pure, no I/O)."""

import re

from mdev_hooks.errors import HookError

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# parent and type are ONE path component under sysfs: no '/', no '..', nothing a shell or a path walk interprets.
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

MAX_SHOWN = 80  # hostile names are cut in error messages so the one-line error stays readable


def shown(value: str) -> str:
    """A printable, bounded rendering of untrusted text for error lines."""
    text = value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "..."
    return repr(text) if not text.isprintable() or not text or " " in text else text


def canonical_uuid(value: str, what: str) -> str:
    """The lower-case canonical form of a UUID, or HookError naming ``what`` it was."""
    if not _UUID.fullmatch(value):
        raise HookError(f"{what} {shown(value)} is not a UUID in canonical form (8-4-4-4-12 hex digits)")
    return value.lower()


def is_valid_name(value: str) -> bool:
    return bool(_NAME.fullmatch(value)) and value not in (".", "..")


def check_name(value: str, what: str, mdev: str) -> str:
    if not is_valid_name(value):
        raise HookError(
            f"mdev {mdev}: {what} {shown(value)} is not a valid name "
            f"(one path component of letters, digits and _.:-, e.g. 0000:00:02.0 or nvidia-231)"
        )
    return value
