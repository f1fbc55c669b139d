"""`mdev-hooks plan`: the hook's own validation, in-process against materialized hosts: each verdict and its line."""

from __future__ import annotations

import json

import pytest
from support.asserts import one_line
from support.domxml import Mdev, domain_xml, mdev, no_metadata, unmanaged
from support.host import MakeHost
from support.ids import (
    DOM_A,
    DOM_B,
    GVT,
    GVT_V54,
    GVT_V58,
    MISSING_PARENT,
    MTTY,
    MTTY_1,
    MTTY_2,
    NAME_A,
    NAME_B,
    T4,
    T4_231,
    U1,
    U2,
    U3,
)

HOST = ["intel-gvtg", "mtty-sample"]


def dom(*items: Mdev, prefixed: bool = True) -> bytes:
    return domain_xml(NAME_A, DOM_A, items, prefixed=prefixed)


def failed(make_host: MakeHost, xml: bytes, **host: object) -> str:
    """Plan fails: exit 1, the verdict on stdout, the same problem as one line on stderr; returns the problem."""
    h = make_host(HOST, **host)
    r = h.plan(xml)
    assert r.code == 1, r
    problem = one_line(r.err)
    assert r.out.endswith(f"verdict: a start would FAIL:\n  {problem}\n"), r.out
    return problem


@pytest.mark.parametrize("prefixed", [True, False])
def test_ok_two_devices_and_the_writes_a_start_would_make(make_host: MakeHost, prefixed: bool) -> None:
    h = make_host(HOST)
    r = h.plan(dom(mdev(U1, GVT, GVT_V58), mdev(U2, MTTY, MTTY_2), prefixed=prefixed))
    assert (r.code, r.err) == (0, ""), r
    rows = {line.split()[0]: line.split() for line in r.out.splitlines() if line.startswith("  ") and "-" in line}
    assert rows[U1][:4] == [U1, GVT, GVT_V58, "GVTg_V5_8"] and rows[U1][-3:] == ["2", "create", "ok"]
    assert rows[U2][-3:] == ["12", "create", "ok"]
    create = h.sysfs / "class" / "mdev_bus" / GVT / "mdev_supported_types" / GVT_V58 / "create"
    assert f"1. create mdev {U1}: write it to {create}; remove it when the domain stops" in r.out
    assert r.out.endswith("verdict: a start would succeed\n")
    assert list(h.state_dir.iterdir()) == []  # plan writes no claim


def test_parent_missing_lists_the_known_parents(make_host: MakeHost) -> None:
    problem = failed(make_host, dom(mdev(U1, MISSING_PARENT, GVT_V54)))
    assert problem == (f"cannot create mdev {U1} (type {GVT_V54} on {MISSING_PARENT}): parent {MISSING_PARENT} not "
                       f"found under /sys/class/mdev_bus (known parents: {GVT}, {MTTY})")


def test_type_not_offered_lists_the_offered_ones(make_host: MakeHost) -> None:
    problem = failed(make_host, dom(mdev(U1, MTTY, "mtty-3")))
    assert f"parent {MTTY} does not offer type mtty-3 (offered: {MTTY_1}, {MTTY_2}; " in problem


def test_no_free_instance_names_the_devices_in_use(make_host: MakeHost) -> None:
    problem = failed(make_host, dom(mdev(U1, GVT, GVT_V54)), devices=[(U2, GVT, GVT_V54)])
    assert problem == (f"cannot create mdev {U1} (type {GVT_V54} on {GVT}): no free instance "
                       f"(available_instances=0; 1 in use: {U2})")


def test_no_free_instance_as_the_driver_reports_it(make_host: MakeHost) -> None:
    problem = failed(make_host, dom(mdev(U1, MTTY, MTTY_1)), available={(MTTY, MTTY_1): 0})
    assert problem.endswith("no free instance (available_instances=0)")


def test_this_domain_needs_more_than_available(make_host: MakeHost) -> None:
    problem = failed(make_host, dom(mdev(U1, GVT, GVT_V58), mdev(U2, GVT, GVT_V58), mdev(U3, GVT, GVT_V58)))
    assert problem == (f"cannot create mdev {U1} (type {GVT_V58} on {GVT}): no free instance "
                       "(available_instances=2; this domain needs 3)")


def test_policy_refusal_names_the_rule_and_the_file(make_host: MakeHost) -> None:
    policy = 'allowed_parents = ["mtty", "0000:00:*"]\nallowed_types = ["mtty-*"]'
    problem = failed(make_host, dom(mdev(U1, MTTY, MTTY_1), mdev(U2, GVT, GVT_V58)), config=policy)
    assert problem.startswith(f"mdev {U2} (type {GVT_V58} on {GVT}): type {GVT_V58} is not allowed by "
                              'allowed_types = ["mtty-*"] in ')
    assert problem.endswith("config.toml")


def test_policy_allows_and_plan_shows_it(make_host: MakeHost) -> None:
    h = make_host(HOST, config='allowed_parents = ["mtty"]')
    r = h.plan(dom(mdev(U1, MTTY, MTTY_1)), "--json")
    assert r.code == 0, r
    data = json.loads(r.out)
    assert data["policy"] == {"config": str(h.config), "allowed_parents": ["mtty"], "allowed_types": None}


def test_uuid_owned_by_another_domain_in_the_ledger(make_host: MakeHost) -> None:
    h = make_host(HOST)
    h.claim(U1, DOM_B, NAME_B, MTTY, MTTY_2)
    r = h.plan(dom(mdev(U1, MTTY, MTTY_1)))  # another parent/type does not matter: the UUID is taken
    assert r.code == 1
    assert one_line(r.err) == (f"cannot use mdev {U1}: the ledger gives it to domain {NAME_B} ({DOM_B}); two "
                               "domains cannot share an mdev")


def test_existing_device_is_adopted_or_kept(make_host: MakeHost) -> None:
    h = make_host(HOST, devices=[(U1, MTTY, MTTY_1), (U2, GVT, GVT_V58)])
    h.claim(U2, DOM_A, NAME_A, GVT, GVT_V58)  # the hook created U2 for this domain before
    r = h.plan(dom(mdev(U1, MTTY, MTTY_1), mdev(U2, GVT, GVT_V58)), "--json")
    assert (r.code, r.err) == (0, ""), r
    data = json.loads(r.out)
    assert [(m["uuid"], m["action"], m["verdict"]) for m in data["mdevs"]] == [(U1, "adopt", "ok"), (U2, "keep", "ok")]
    assert data["actions"] == [
        f"use the existing mdev {U1} as it is (type {MTTY_1} on {MTTY}, owned by no domain); leave it in place when "
        "the domain stops",
        f"keep mdev {U2}: the hook already created it for this domain"]


def test_existing_device_of_another_type_fails(make_host: MakeHost) -> None:
    problem = failed(make_host, dom(mdev(U1, MTTY, MTTY_2)), devices=[(U1, MTTY, MTTY_1)])
    assert problem == (f"cannot use mdev {U1}: it already exists as type {MTTY_1} on {MTTY}, not {MTTY_2} on {MTTY}; "
                       "remove it or give the domain another UUID")


def test_managed_hostdev_without_metadata_says_what_to_add(make_host: MakeHost) -> None:
    problem = failed(make_host, dom(mdev(U1, MTTY, MTTY_1), no_metadata(U2)))
    assert U2 in problem and "does not say which parent and type to create; add it with: virsh metadata" in problem


def test_parents_table_maps_the_domains_parent(make_host: MakeHost) -> None:
    h = make_host(["intel-gvtg", "nvidia-tesla-t4"], config=f'[parents]\n"0000:41:00.0" = "{T4}"')
    r = h.plan(dom(mdev(U1, "0000:41:00.0", T4_231)))
    assert (r.code, r.err) == (0, ""), r
    assert f"parent mapped: mdev {U1}: the domain's 0000:41:00.0 is {T4} on this host ([parents] in {h.config})" \
        in r.out
    assert f"/class/mdev_bus/{T4}/mdev_supported_types/{T4_231}/create" in r.out
    r = h.plan(dom(mdev(U1, "0000:42:00.0", T4_231)))  # not in the table: as written, and not found
    assert r.code == 1 and "parent 0000:42:00.0 not found" in one_line(r.err)


def test_json_failure_carries_the_same_problem(make_host: MakeHost) -> None:
    h = make_host(HOST)
    r = h.plan(dom(mdev(U1, GVT, "nope")), "--json")
    assert r.code == 1
    data = json.loads(r.out)
    assert data["ok"] is False and data["actions"] == [] and data["mdevs"][0]["verdict"] == "fail"
    assert r.err == f"mdev-hooks: {data['problem']}\n"


def test_no_managed_mdev_but_metadata_only(make_host: MakeHost) -> None:
    h = make_host(HOST)
    r = h.plan(domain_xml(NAME_A, DOM_A, [Mdev(U1, MTTY, MTTY_1, hostdev=None)]))
    assert (r.code, r.err) == (0, ""), r
    assert "no managed mdev: the hook does nothing for this domain" in r.out
    assert f"ignored: metadata entry {U1} has no <hostdev type='mdev' managed='yes'> with that UUID" in r.out


def test_only_unmanaged_mdev_hostdevs_are_counted_and_left_alone(make_host: MakeHost) -> None:
    h = make_host(HOST)
    r = h.plan(dom(unmanaged(U1), unmanaged(U2)))
    assert (r.code, r.err) == (0, ""), r
    assert "names no mdev" not in r.out
    assert "2 mdev hostdev" in r.out and "managed='yes'" in r.out, r.out
    assert r.out.endswith("verdict: a start would succeed\n")
