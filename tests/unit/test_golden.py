"""`plan`, `status` and `types` output, text and --json, against tests/unit/golden/ (MDEV_HOOKS_REGEN_GOLDEN=1 or
--regen-golden rewrites them; read the diff before committing it)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support.domxml import PciHostdev, VgpuEntry, domain_xml, mdev
from support.golden import check_json, check_text
from support.host import MakeHost, Run, UnitHost
from support.ids import (
    A40_565,
    A40_BUSY,
    AP_MATRIX,
    AP_PASSTHROUGH,
    DOM_A,
    DOM_B,
    DOM_C,
    GVT,
    GVT_V54,
    GVT_V58,
    H200_1414,
    MTTY,
    MTTY_1,
    MTTY_2,
    NAME_A,
    NAME_B,
    NAME_C,
    PF,
    T4,
    U1,
    U2,
    U3,
    U4,
    U5,
    VF0,
    VF1,
)

PLAN: dict[str, Callable[[MakeHost], tuple[UnitHost, bytes]]] = {}
STATUS: dict[str, Callable[[MakeHost], UnitHost]] = {}
TYPES: dict[str, tuple[Callable[[MakeHost], UnitHost], list[str]]] = {}


def _plan_gvtg_mtty(make_host: MakeHost) -> tuple[UnitHost, bytes]:
    """Create one, keep one the hook made for this domain, adopt an external one."""
    h = make_host(["intel-gvtg", "mtty-sample"], devices=[(U2, MTTY, MTTY_2), (U3, MTTY, MTTY_1)])
    h.claim(U2, DOM_A, NAME_A, MTTY, MTTY_2)
    return h, domain_xml(NAME_A, DOM_A, [mdev(U1, GVT, GVT_V58), mdev(U2, MTTY, MTTY_2), mdev(U3, MTTY, MTTY_1)])


def _plan_policy_refused(make_host: MakeHost) -> tuple[UnitHost, bytes]:
    h = make_host(["intel-gvtg", "mtty-sample"], config='allowed_parents = ["mtty"]\nallowed_types = ["mtty-*"]')
    return h, domain_xml(NAME_A, DOM_A, [mdev(U1, MTTY, MTTY_1), mdev(U2, GVT, GVT_V54)])


def _plan_a40_pf(make_host: MakeHost) -> tuple[UnitHost, bytes]:
    h = make_host(["nvidia-a40-sriov"], devices=A40_BUSY)
    return h, domain_xml(NAME_A, DOM_A, [mdev(U1, PF, A40_565)])


def _plan_h200_vf(make_host: MakeHost) -> tuple[UnitHost, bytes]:
    h = make_host(["nvidia-h200x-vendor-vfio"], vgpus={VF0: H200_1414})
    return h, domain_xml(NAME_A, DOM_A, [VgpuEntry(PF, H200_1414), PciHostdev(VF1)])


def _plan_s390_attrs(make_host: MakeHost) -> tuple[UnitHost, bytes]:
    h = make_host(["s390-vfio-ap"])
    return h, domain_xml(NAME_A, DOM_A, [mdev(U1, AP_MATRIX, AP_PASSTHROUGH, ("assign_adapter", "5"),
                                              ("assign_domain", "4"))])


PLAN.update({"gvtg-mtty": _plan_gvtg_mtty, "policy-refused": _plan_policy_refused, "a40-pf": _plan_a40_pf,
             "h200-vf": _plan_h200_vf, "s390-attrs": _plan_s390_attrs})


def _status_mixed(make_host: MakeHost) -> UnitHost:
    """Owned and running, owned and stopped (orphan), gone, external, adopted by a stopped domain."""
    h = make_host(["intel-gvtg", "mtty-sample", "nvidia-tesla-t4"],
                  devices=[(U1, GVT, GVT_V58), (U2, MTTY, MTTY_2), (U4, GVT, GVT_V58), (U5, MTTY, MTTY_1)])
    h.claim(U1, DOM_A, NAME_A, GVT, GVT_V58)
    h.claim(U2, DOM_B, NAME_B, MTTY, MTTY_2)
    h.claim(U3, DOM_C, NAME_C, MTTY, MTTY_1)  # its device is gone
    h.claim(U5, DOM_C, NAME_C, MTTY, MTTY_1, state="adopted")
    h.running(DOM_A)
    return h


def _status_virsh_broken(make_host: MakeHost) -> UnitHost:
    h = _status_mixed(make_host)
    (h.virsh_dir / "broken").touch()
    return h


def _status_policy(make_host: MakeHost) -> UnitHost:
    return make_host(["intel-gvtg", "mtty-sample"], config=(
        'allowed_parents = ["mtty", "0000:00:*"]\nallowed_types = ["mtty-2", "i915-GVTg_V5_8"]\n'
        f'[parents]\n"0000:41:00.0" = "{GVT}"\n"0000:42:00.0" = "{T4}"'))


def _status_h200(make_host: MakeHost) -> UnitHost:
    h = make_host(["nvidia-h200x-vendor-vfio"], vgpus={VF0: H200_1414, VF1: H200_1414})
    h.claim(VF0, DOM_A, NAME_A, VF0, H200_1414, kind="nvidia-vf", pf=PF)
    h.running(DOM_A)
    return h


def _status_s390_attrs(make_host: MakeHost) -> UnitHost:
    """A device the hook created with ordered attributes, for a running domain."""
    h = make_host(["s390-vfio-ap"], devices=[(U1, AP_MATRIX, AP_PASSTHROUGH)])
    h.claim(U1, DOM_A, NAME_A, AP_MATRIX, AP_PASSTHROUGH, attrs=["assign_adapter=5", "assign_domain=4"])
    h.running(DOM_A)
    return h


STATUS.update({"mixed": _status_mixed, "virsh-broken": _status_virsh_broken, "policy": _status_policy,
               "h200": _status_h200, "s390-attrs": _status_s390_attrs})

TYPES.update({
    "gvtg-mtty": (lambda mk: mk(["intel-gvtg", "mtty-sample"], devices=[(U1, MTTY, MTTY_2)]), []),
    "a40-vf": (lambda mk: mk(["nvidia-a40-sriov"], devices=A40_BUSY), ["--parent", VF1]),
    "h200": (lambda mk: mk(["nvidia-h200x-vendor-vfio"], vgpus={VF1: H200_1414}), []),
    "h200-pf": (lambda mk: mk(["nvidia-h200x-vendor-vfio"], vgpus={VF1: H200_1414}), ["--parent", PF]),
    "s390-ap": (lambda mk: mk(["s390-vfio-ap"], devices=[(U1, AP_MATRIX, AP_PASSTHROUGH)]), []),
})


def both(h: UnitHost, name: str, run: Callable[..., Run], *args: str, code: int = 0) -> None:
    """The text and the --json output of one command against golden/<name>.txt and .json."""
    for fmt in ("text", "json"):
        r = run(*args, *(["--json"] if fmt == "json" else []))
        assert r.code == code, r
        assert (r.err == "") == (code == 0), r.err
        if fmt == "text":
            check_text(name, r.out, h.paths())
        else:
            check_json(name, r.out, h.paths())


SHARED = {"a40-pf", "a40-vf"}  # big hosts, built once per session and only read (see shared_host)


@pytest.mark.parametrize("case", sorted(PLAN))
def test_plan(make_host: MakeHost, shared_host: MakeHost, case: str) -> None:
    h, xml = PLAN[case](shared_host if case in SHARED else make_host)
    both(h, f"plan-{case}", lambda *opts: h.plan(xml, *opts), code=1 if case == "policy-refused" else 0)


@pytest.mark.parametrize("case", sorted(STATUS))
def test_status(make_host: MakeHost, case: str) -> None:
    h = STATUS[case](make_host)
    both(h, f"status-{case}", h.cli, "status")


@pytest.mark.parametrize("case", sorted(TYPES))
def test_types(make_host: MakeHost, shared_host: MakeHost, case: str) -> None:
    make, args = TYPES[case]
    h = make(shared_host if case in SHARED else make_host)
    both(h, f"types-{case}", h.cli, "types", *args)
