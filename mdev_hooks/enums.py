"""The words the hook writes into its ledger, its log and `--json`: device kinds, step actions, claim states.

Invariant: each member's value is the JSON spelling, and a member compares equal to (and serialises as) that string.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:

    class StrEnum(str, Enum):
        """enum.StrEnum of Python 3.11, for 3.9 and 3.10."""

        def __str__(self) -> str:
            return str(self.value)


class Kind(StrEnum):
    """`<device kind=...>`: an mdev (the default), or a VF driven through NVIDIA's vendor interface."""

    MDEV = "mdev"
    NVIDIA_VF = "nvidia-vf"


class Action(StrEnum):
    """What prepare does with a device: create it, use an existing one nobody owns, or keep this domain's own."""

    CREATE = "create"
    ADOPT = "adopt"
    KEEP = "keep"


class ClaimState(StrEnum):
    """A ledger claim: written before the write (intent), after it (created), or for a device found (adopted)."""

    INTENT = "intent"
    CREATED = "created"
    ADOPTED = "adopted"
