"""The configuration: /etc/mdev-hooks/config.toml (or $MDEV_HOOKS_CONFIG) and the dry-run switch of the environment.

Invariant: an unknown key, a wrong type or a relative path is an error naming the file, never a silent default (a
typo must not send the hook to the real /sys); flat files are read without importing a TOML parser.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mdev_hooks.errors import HookError

DEFAULT_PATH = "/etc/mdev-hooks/config.toml"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Config:
    sysfs_root: str = "/sys"
    state_dir: str = "/run/mdev-hooks"
    lock_dir: str = "/run/mdev-hooks/locks"  # under state_dir: /run is root-only, /run/lock is world-writable
    log_file: str = "/var/log/mdev-hooks.log"
    dry_run: bool = False
    lock_timeout: float = 30.0
    # NVIDIA's vGPU manager may remove an mdev itself when the VM stops; give it this long first.
    nvidia_release_wait: float = 10.0
    # bounded retry of `remove` on transient errors (EAGAIN, EBUSY)
    remove_timeout: float = 5.0
    # at prepare: wait this long, polling sysfs and holding no lock, for a parent or type that is not there yet
    # (autostarted domains start at boot, often before the vGPU manager or GVT driver has registered its parents)
    parent_wait: float = 10.0
    # admin policy: shell globs (fnmatch, case-sensitive) of the parents and types domains may ask for; None = all
    allowed_parents: tuple[str, ...] | None = None
    allowed_types: tuple[str, ...] | None = None
    # mdevctl's persistent definitions (<dir>/<parent>/<uuid>): the source of a managed mdev without metadata
    mdevctl_dir: str = "/etc/mdevctl.d"
    # [parents] table: a domain's parent name -> this host's parent name (migration between hosts whose PCI
    # addresses differ); applied to every managed mdev before validation
    parents: tuple[tuple[str, str], ...] = ()
    path: str = ""  # the file this came from ("" = defaults only)


# the Python type of each scalar key (annotations are strings under `from __future__ import annotations`)
_TYPES: dict[str, type] = {
    "sysfs_root": str, "state_dir": str, "lock_dir": str, "log_file": str, "dry_run": bool, "lock_timeout": float,
    "nvidia_release_wait": float, "remove_timeout": float, "parent_wait": float, "allowed_parents": tuple,
    "allowed_types": tuple, "mdevctl_dir": str, "parents": tuple,
}
_GLOB_LISTS = ("allowed_parents", "allowed_types")
MAX_GLOBS = 256


def _globs(key: str, value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HookError(f"config {path}: {key} must be a list of strings (shell globs), e.g. [\"0000:00:02.0\"]")
    if len(value) > MAX_GLOBS:
        raise HookError(f"config {path}: {key} has more than {MAX_GLOBS} entries")
    for v in value:
        if not v or len(v) > 256 or not v.isprintable() or any(c.isspace() for c in v) or "/" in v:
            raise HookError(f"config {path}: {key} entry {v[:80]!r} is not a glob of a device name (no spaces, no /)")
    return tuple(value)


def _parent_map(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    from mdev_hooks.names import is_valid_name

    if not isinstance(value, dict):
        raise HookError(f"config {path}: parents must be a table ([parents] with \"DOMAIN_PARENT\" = \"HOST_PARENT\")")
    if len(value) > MAX_GLOBS:
        raise HookError(f"config {path}: [parents] has more than {MAX_GLOBS} entries")
    for k, v in value.items():
        if not is_valid_name(k) or not isinstance(v, str) or not is_valid_name(v):
            raise HookError(f"config {path}: [parents] entry {k[:80]!r} = {str(v)[:80]!r} is not a parent name mapped "
                            "to a parent name (one path component of letters, digits and _.:-)")
    return tuple(sorted(value.items()))


def _coerce(key: str, value: Any, path: str) -> Any:
    if key in _GLOB_LISTS:
        return _globs(key, value, path)
    if key == "parents":
        return _parent_map(value, path)
    want = _TYPES[key]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, want) or (want is float and isinstance(value, bool)):
        raise HookError(f"config {path}: {key} must be a {want.__name__}, not {type(value).__name__}")
    if isinstance(value, float) and not 0 <= value <= 3600:
        raise HookError(f"config {path}: {key} must be between 0 and 3600 seconds")
    if key == "log_file" and value in ("journal", "syslog"):
        return value
    if isinstance(value, str) and not os.path.isabs(value):
        raise HookError(f"config {path}: {key} must be an absolute path" +
                        (' (or "journal" or "syslog")' if key == "log_file" else ""))
    return value


def env_flag(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise HookError(f"environment {name}={value!r}: use 1/true/yes or 0/false/no")


# Flat `key = value` lines (what config.toml holds), in a strict subset of TOML: bare key; basic string of printable
# ASCII without escapes, true/false, decimal integer or float; optional comment. Any other line (tables, arrays,
# escapes, exponents, non-ASCII, CR, ...) or a repeated key sends the whole file to tomllib (tomlsubset below Python
# 3.11), which also reports every error. The hook reads the config at every managed start and stop, and tomllib costs
# more to import than this.
_FLAT_LINE = re.compile(
    r'[ \t]*(?:([A-Za-z0-9_-]+)[ \t]*=[ \t]*("[ !#-\[\]-~]*"|true|false|(?:0|[1-9][0-9]*)(?:\.[0-9]+)?)[ \t]*)?'
    r"(?:#[\t -~]*)?"
)


def _flat(text: str) -> dict[str, Any] | None:
    """The file's values if every line is in the flat subset, else None (let tomllib read it)."""
    if "\r" in text:
        return None
    values: dict[str, Any] = {}
    for line in text.split("\n"):
        m = _FLAT_LINE.fullmatch(line)
        if m is None:
            return None
        key, raw = m.groups()
        if key is None:
            continue
        if key in values:
            return None
        if raw[0] == '"':
            values[key] = raw[1:-1]
        elif raw in ("true", "false"):
            values[key] = raw == "true"
        else:
            values[key] = float(raw) if "." in raw else int(raw)
    return values


def _parse(raw: bytes, path: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HookError(f"config {path}: not valid TOML: {e}") from None
    flat = _flat(text)
    if flat is not None:
        return flat
    if sys.version_info >= (3, 11):
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise HookError(f"config {path}: not valid TOML: {e}") from None
    return _parse_subset(text, path)


def _parse_subset(text: str, path: str) -> dict[str, Any]:
    """Below Python 3.11 (no tomllib, and no TOML library is a dependency): tomlsubset, the TOML the config needs."""
    from mdev_hooks import tomlsubset

    try:
        return tomlsubset.loads(text)
    except tomlsubset.OutsideSubset as e:
        raise HookError(f"config {path}: line {e.line}: {e.message} that Python {sys.version_info[0]}."
                        f"{sys.version_info[1]} reads here (all of TOML needs Python 3.11's tomllib)") from None
    except tomlsubset.TOMLSubsetError as e:
        raise HookError(f"config {path}: not valid TOML: {e}") from None


def load(environ: Mapping[str, str] = os.environ) -> Config:
    """Read the config file (optional unless named by MDEV_HOOKS_CONFIG) and apply MDEV_HOOKS_DRY_RUN."""
    path = environ.get("MDEV_HOOKS_CONFIG") or DEFAULT_PATH
    values: dict[str, Any] = {}
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 20)
    except FileNotFoundError:
        if "MDEV_HOOKS_CONFIG" in environ:
            raise HookError(f"config {path} (from MDEV_HOOKS_CONFIG) does not exist") from None
        raw = None
    except OSError as e:
        raise HookError(f"config {path}: cannot read it: {e.strerror}") from None
    if raw is not None:
        data = _parse(raw, path)
        for key, value in data.items():
            if key not in _TYPES:
                # a typo such as `sysfs_rot` must not silently fall back to the real /sys
                raise HookError(f"config {path}: unknown key {key!r} (known: {', '.join(sorted(_TYPES))})")
            values[key] = _coerce(key, value, path)
        values["path"] = path
    dry = env_flag(environ.get("MDEV_HOOKS_DRY_RUN"), "MDEV_HOOKS_DRY_RUN")
    if dry is not None:
        values["dry_run"] = dry
    return Config(**values)
