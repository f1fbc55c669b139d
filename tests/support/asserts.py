"""Assertions on what the user sees: the hook's (and the CLI's) error is exactly one line `mdev-hooks: ...`.

Invariant: a text passes only if it has exactly one non-empty line, that line starts with `mdev-hooks: ` and no
traceback is anywhere in it.
"""

from __future__ import annotations

PREFIX = "mdev-hooks: "


def one_line(text: str) -> str:
    """The message of an error text that is one `mdev-hooks: ...` line (without the prefix); AssertionError else."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one non-empty line, got {len(lines)}:\n{text}"
    assert lines[0].startswith(PREFIX), f"expected a line starting {PREFIX!r}:\n{text}"
    assert "Traceback" not in text, text
    return lines[0][len(PREFIX):]


def assert_one_line(text: str) -> None:
    """AssertionError unless `text` is exactly one non-empty line starting `mdev-hooks: `."""
    one_line(text)
