"""Text rendering shared by the commands: aligned tables, cut descriptions, numbers that may be unknown, policy.

Invariant: pure functions of their arguments (no I/O), so every command's text is reproducible in golden files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_DESC = 60


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [str(c).ljust(widths[i]) if i < len(r) - 1 else str(c) for i, c in enumerate(r)]
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


def with_alias(data: dict[str, Any], key: str, alias: str) -> dict[str, Any]:
    """`data` with `alias` (a JSON key's name before a rename, kept for one release) right after `key`."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        out[k] = v
        if k == key:
            out[alias] = v
    return out


def cut(text: str, limit: int = MAX_DESC) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def num(value: int | None) -> str:
    return "?" if value is None else str(value)


def yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def globs(value: Sequence[str] | None) -> str:
    return "(all)" if value is None else "[" + ", ".join(f'"{g}"' for g in value) + "]"


@dataclass(frozen=True)
class Policy:
    """The admin's allowed_parents / allowed_types as shown by plan and status."""

    config: str
    allowed_parents: list[str] | None
    allowed_types: list[str] | None

    def to_json(self) -> dict[str, object]:
        return {"config": self.config, "allowed_parents": self.allowed_parents, "allowed_types": self.allowed_types}

    def render(self) -> str:
        return (f"policy ({self.config}): allowed_parents = {globs(self.allowed_parents)}, "
                f"allowed_types = {globs(self.allowed_types)}")


def policy_of(cfg_path: str, allowed_parents: Sequence[str] | None,
              allowed_types: Sequence[str] | None) -> Policy | None:
    """None when there is no policy (every parent and type allowed)."""
    if allowed_parents is None and allowed_types is None:
        return None
    return Policy(cfg_path, None if allowed_parents is None else list(allowed_parents),
                  None if allowed_types is None else list(allowed_types))


def parent_cell(parent: str, pf: str | None) -> str:
    """PARENT column: the parent, `PF p` for a PF itself, `vf (VF of pf)` for a VF chosen on a PF."""
    if not pf:
        return parent
    return f"PF {pf}" if parent == pf else f"{parent} (VF of {pf})"
