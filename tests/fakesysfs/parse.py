"""The kernel's parsers for what user space writes into sysfs (pure functions raising OSError like the kernel)."""

from __future__ import annotations

import errno

_HEX = frozenset(b"0123456789abcdefABCDEF")
_HYPHENS = (8, 13, 18, 23)
ULONG_MAX = 2**64 - 1


def _fail(code: int) -> OSError:
    return OSError(code, f"{errno.errorcode[code]} (fake sysfs)")


def create_uuid(data: bytes) -> str:
    """What create_store()/guid_parse() accept: 36 or 37 bytes, the 37th never looked at; lower-case result."""
    if not 36 <= len(data) <= 37:
        raise _fail(errno.EINVAL)
    head = data[:36]
    for i, c in enumerate(head):
        if (c != ord("-")) if i in _HYPHENS else (c not in _HEX):
            raise _fail(errno.EINVAL)
    return head.decode("ascii").lower()


def kstrtoul(data: bytes) -> int:
    """lib/kstrtox.c kstrtoul(buf, 0): optional '+', 0x/0 prefixes, one trailing newline; else EINVAL/ERANGE."""
    s = data.split(b"\0", 1)[0]  # sysfs hands the driver a NUL-terminated copy
    if s[:1] == b"+":
        s = s[1:]
    base = 10
    if s[:1] == b"0":
        if s[1:2] in (b"x", b"X") and s[2:3] and s[2] in _HEX:
            base, s = 16, s[2:]
        else:
            base = 8
    digits = "0123456789abcdef"[:base]
    n = 0
    while n < len(s) and chr(s[n]).lower() in digits:
        n += 1
    if n == 0:
        raise _fail(errno.EINVAL)
    rest = s[n:]
    if rest not in (b"", b"\n"):
        raise _fail(errno.EINVAL)
    value = int(s[:n], base)
    if value > ULONG_MAX:
        raise _fail(errno.ERANGE)
    return value
