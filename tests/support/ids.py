"""The ids the tests share: domain UUIDs and names, mdev UUIDs, and the parent/type names of the fake's profiles.

Invariant: the one module of ids in tests/: constants plus two id makers, no imports of the product or the
fake; parent names are those of tests/fakesysfs profiles.json, so a test naming one gets a device the
materialized or mounted fake really has.
"""

from __future__ import annotations

import uuid as uuidlib

# -- domains (<uuid>, <name>) ----------------------------------------------------------------------------------
DOM_A, NAME_A = "5909df77-0544-4c25-b292-6027c2468ce1", "vm-a"
DOM_B, NAME_B = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "vm-b"
DOM_C, NAME_C = "11111111-2222-4333-8444-555555555555", "vm-c"

# -- mdev UUIDs (canonical, lower case) ---------------------------------------------------------------------------
U1 = "4b20d080-1b54-4048-85b3-a6a62d165c01"
U2 = "9a0c7c5e-3f0e-4d6b-9b8e-2c1d0f6a7e11"
U3 = "2f6e1c9a-8b3d-4e7f-a1c2-d3e4f5a6b7c8"
U4 = "8d3a3c56-7f1b-4a5e-9c1d-2b6f0e4a9d10"
U5 = "3c1e7a40-22b5-4d7e-8f60-9a1b2c3d4e5f"
U6 = "783e6dbb-ea0e-411f-94e2-717eaad438bf"

# -- parents and types, per profile ---------------------------------------------------------------------------
GVT = "0000:00:02.0"  # intel-gvtg: one pool shared by its types
GVT_V54, GVT_V58 = "i915-GVTg_V5_4", "i915-GVTg_V5_8"  # 1 and 2 instances on an empty GPU
MTTY = "mtty"  # mtty-sample
MTTY_1, MTTY_2 = "mtty-1", "mtty-2"
T4 = "0000:3b:00.0"  # nvidia-tesla-t4: one type at a time per GPU
T4_231, T4_222 = "nvidia-231", "nvidia-222"
AP_MATRIX = "matrix"  # s390-vfio-ap
AP_PASSTHROUGH = "vfio_ap-passthrough"

# nvidia-a40-sriov and nvidia-h200x-vendor-vfio both put their PF at 0000:41:00.0 (never in one fake together)
PF = "0000:41:00.0"
VF0, VF1, VF2, VF3 = "0000:41:00.4", "0000:41:00.5", "0000:41:00.6", "0000:41:00.7"  # first VFs, address order
A40_565 = "nvidia-565"  # 2 per GPU, one per VF
A40_566 = "nvidia-566"  # 1 per GPU (the whole GPU)
H200_1414 = "1414"  # NVIDIA H200X-1-18C: 7 per GPU (a slice)
H200_1428 = "1428"  # NVIDIA H200X-141C: the whole GPU, one per GPU

MISSING_PARENT = "0000:99:00.0"  # in no profile

# the A40 states the unit tier shares between tests (each is written out once: 32 VFs are ~7000 files)
A40_BUSY = ((U2, VF0, A40_565),)  # one nvidia-565 (2 per GPU) on the first VF


def uid() -> str:
    """A fresh random mdev UUID (a test that needs no fixed one)."""
    return str(uuidlib.uuid4())


def dom_uuid(i: int) -> str:
    """The i-th of a series of domain UUIDs (tests that start many domains)."""
    return f"00000000-0000-4000-8000-{i:012d}"
