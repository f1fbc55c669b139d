"""Who created which device for which domain: one claim file per device key (mdev UUID, or VF address) in state_dir.

Invariant: a claim is taken with link(2) of a fully written temp file, so it is atomic AND exclusive (two domains
can never own one key, whatever parents they use), and it is written before the device (state intent) and updated
after (created), so a hook killed at any point leaves enough for `release`. Claims are found by domain UUID.
A claim says its `format` (none: 1) and a reader ignores fields it does not know, so claims that outlive an upgrade
or a downgrade while VMs run stay readable; `mdev-hooks ledger downgrade` rewrites them for a reader that cannot.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from mdev_hooks.enums import ClaimState, Kind
from mdev_hooks.errors import HookError
from mdev_hooks.fsutil import check_private_dir, ensure_private_dir, fsync_dir

_SUFFIX = ".json"
# written into every claim since 0.3.0; a file without it is format 1 (0.2's `key`, or 0.1's same fields with the
# key spelled `mdev`). A later format may add fields: this reader ignores them.
FORMAT = 2


@dataclass(frozen=True)
class Claim:
    key: str  # the device: an mdev UUID, or (kind nvidia-vf) the VF's PCI address; the file's name
    domain_uuid: str
    domain_name: str
    parent: str
    type: str
    state: ClaimState
    pid: int = 0
    time: float = 0.0
    attrs: tuple[str, ...] = ()  # "name=value" written in this order after create (empty: none)
    pf: str = ""  # the SR-IOV physical function the domain named, when the hook chose `parent` (a VF) on it
    # nvidia-vf: `key` and `parent` are the VF, `type` the vGPU type id set on it, `pf` the VF's PF (its lock)
    kind: str = Kind.MDEV  # a Kind member, or the word of a kind registered at run time (core/kinds)

    def with_state(self, state: ClaimState) -> Claim:
        return replace(self, state=state, time=time.time())


class CorruptClaim(HookError):
    pass


class LedgerError(HookError):
    """state_dir cannot be written (read-only, full, gone): one line naming the directory and the cause."""


class Ledger:
    def __init__(self, state_dir: str) -> None:
        self.dir = state_dir

    def ensure_dir(self) -> None:
        """Create state_dir root-only; refuse one that is a symlink or writable by others."""
        ensure_private_dir(self.dir, "state_dir")

    def check_dir(self) -> None:
        """Refuse a planted or foreign-writable state_dir: its claims decide what `release` removes."""
        check_private_dir(self.dir, "state_dir")

    def _failed(self, what: str, key: str, e: OSError) -> LedgerError:
        return LedgerError(f"cannot {what} device {key} in the ledger (state_dir {self.dir}): {e.strerror}")

    def path(self, key: str) -> str:
        """The file of key's claim."""
        return os.path.join(self.dir, key + _SUFFIX)

    def _write_temp(self, key: str, data: dict[str, Any]) -> str:
        tmp = os.path.join(self.dir, f".{key}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(data, sort_keys=True).encode() + b"\n")
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def read(self, key: str) -> dict[str, Any] | None:
        """The claim file's JSON object as it is (any format), None if there is no file."""
        path = self.path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CorruptClaim(f"ledger entry {path} cannot be read: {e.strerror}") from None
        try:
            raw = os.read(fd, 65536)
        finally:
            os.close(fd)
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise TypeError("not an object")
        except (ValueError, TypeError) as e:
            raise self._corrupt(path, e) from None
        return data

    def get(self, key: str) -> Claim | None:
        data = self.read(key)
        if data is None:
            return None
        path = self.path(key)
        try:
            claim = from_json(data)
        except (ValueError, TypeError, AttributeError) as e:
            raise self._corrupt(path, e) from None
        if claim.key != key:
            raise CorruptClaim(f"ledger entry {path} names another device ({claim.key}); delete the file")
        return claim

    @staticmethod
    def _corrupt(path: str, e: Exception) -> CorruptClaim:
        return CorruptClaim(f"ledger entry {path} is corrupt ({e.__class__.__name__}); "
                            "check the device with `mdev-hooks status`, then delete the file")

    def claim(self, claim: Claim) -> Claim | None:
        """Take the claim exclusively. Returns None on success, else the existing claim (anyone's)."""
        try:
            tmp = self._write_temp(claim.key, to_json(claim))
            try:
                os.link(tmp, self.path(claim.key))
            except FileExistsError:
                return self.get(claim.key) or claim  # vanished meanwhile: report it as taken, caller retries never
            finally:
                os.unlink(tmp)
            fsync_dir(self.dir)
        except OSError as e:
            raise self._failed("record", claim.key, e) from None
        return None

    def update(self, claim: Claim) -> None:
        self.rewrite(claim.key, to_json(claim))

    def rewrite(self, key: str, data: dict[str, Any]) -> None:
        """Replace key's file with `data` atomically (rename of a fully written temp file)."""
        try:
            tmp = self._write_temp(key, data)
            os.rename(tmp, self.path(key))
            fsync_dir(self.dir)
        except OSError as e:
            raise self._failed("update", key, e) from None

    def drop(self, key: str) -> None:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            return
        except OSError as e:
            raise self._failed("drop", key, e) from None
        try:
            fsync_dir(self.dir)
        except OSError as e:
            raise self._failed("drop", key, e) from None

    def claim_keys(self) -> list[str]:
        """The keys of every claim file, sorted (temp files and the `locks` directory are no claims)."""
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        return [n[: -len(_SUFFIX)] for n in names if not n.startswith(".") and n.endswith(_SUFFIX)]

    def all(self) -> tuple[list[Claim], list[str]]:
        """Every readable claim, and the problems with unreadable ones."""
        claims, problems = [], []
        for key in self.claim_keys():
            try:
                claim = self.get(key)
            except HookError as e:
                problems.append(str(e))
                continue
            if claim is not None:
                claims.append(claim)
        return claims, problems

    def for_domain(self, domain_uuid: str) -> tuple[list[Claim], list[str]]:
        claims, problems = self.all()
        return [c for c in claims if c.domain_uuid == domain_uuid], problems


_FIELDS = frozenset(f.name for f in fields(Claim))


def to_json(claim: Claim) -> dict[str, Any]:
    """What a claim's file holds: its fields and the format."""
    return {**asdict(claim), "format": FORMAT}


def from_json(data: dict[str, Any]) -> Claim:
    """A claim from its file in any format: `mdev` is the key's spelling in 0.1, and fields this version does not
    know (a later format's) are ignored."""
    fmt = data.get("format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise ValueError(f"format {fmt!r}")
    if "key" not in data and "mdev" in data:
        data = {("key" if k == "mdev" else k): v for k, v in data.items()}
    claim = Claim(**{k: v for k, v in data.items() if k in _FIELDS})
    return replace(claim, attrs=tuple(claim.attrs), state=ClaimState(claim.state), kind=_kind(claim.kind))


def _kind(word: str) -> str:
    """A claim's kind: the enum member of a built-in kind, the word of another registered one; ValueError else."""
    from mdev_hooks.core.kinds import known  # the kinds import Claim

    if not known(word):
        raise ValueError(f"unknown device kind {word!r}")
    return Kind(word) if word in Kind._value2member_map_ else str(word)
