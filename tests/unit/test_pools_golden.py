"""Parent pools in the commands' output against tests/unit/golden/: `plan` (the member chosen, the members passed
over and why), `status` (each pool's members and free instances per type), text and --json, and `add --pool`."""

from __future__ import annotations

from support.common import REPO
from support.golden import check_json, check_text
from support.host import MakeHost, UnitHost
from support.ids import DOM_A, GVT, GVT_V54, GVT_V58, MISSING_PARENT, MTTY, MTTY_2, NAME_A, U1, U2, U3
from support.pools import pool_xml, pools_toml

# desk: a member that is not here, mtty (no GVT-g type), the GPU; [parents] maps a member of `tty`
POOLS = f'[parents]\n"0000:01:00.0" = "{MTTY}"\n' + pools_toml(desk=[MISSING_PARENT, MTTY, GVT],
                                                               tty=["0000:01:00.0"])


def _host(make_host: MakeHost, **kw: object) -> UnitHost:
    return make_host(["intel-gvtg", "mtty-sample"], config=POOLS, **kw)


def _both(h: UnitHost, name: str, *args: str, code: int = 0) -> None:
    for fmt in ("text", "json"):
        r = h.cli(*args, *(["--json"] if fmt == "json" else []))
        assert r.code == code, r
        assert (r.err == "") == (code == 0), r.err
        (check_text if fmt == "text" else check_json)(name, r.out, h.paths())


def _plan(h: UnitHost, name: str, xml: bytes, code: int = 0) -> None:
    h._xml_count += 1
    path = h.tmp / f"domain{h._xml_count}.xml"
    path.write_bytes(xml)
    _both(h, name, "plan", str(path), code=code)


def test_plan_shows_the_member_chosen_and_why_others_were_passed_over(make_host: MakeHost) -> None:
    h = _host(make_host)
    _plan(h, "plan-pool", pool_xml(NAME_A, DOM_A, [(U1, 'pool="desk"', GVT_V58), (U2, 'pool="tty"', MTTY_2),
                                                   (U3, f'parent="{MTTY}"', MTTY_2)]))


def test_plan_of_a_full_pool(make_host: MakeHost) -> None:
    h = _host(make_host, devices=[(U3, GVT, GVT_V54)])  # the GPU's one V5_4 is taken
    _plan(h, "plan-pool-full", pool_xml(NAME_A, DOM_A, [(U1, 'pool="desk"', GVT_V54)]), code=1)


def test_status_shows_each_pool_with_members_and_free_instances(make_host: MakeHost) -> None:
    h = _host(make_host, devices=[(U3, GVT, GVT_V58)])
    _both(h, "status-pools", "status")


def test_add_pool_writes_the_entry(make_host: MakeHost) -> None:
    h = _host(make_host)
    plain = REPO / "examples" / "plain.xml"
    (h.virsh_dir / "domains" / "plain.xml").write_bytes(plain.read_bytes())
    r = h.cli("add", "plain", "--pool", "desk", "--type", GVT_V58, "--uuid", U1)
    assert (r.code, r.err) == (0, ""), r
    defined = (h.virsh_dir / "domains" / "plain.xml").read_text()
    check_text("add-pool", r.out + "--- the domain's persistent definition after it ---\n" + defined, h.paths())
    for args, line in (
        (["--pool", "vdi"], "pool vdi is not in [pools] of <CONFIG> (pools on this host: desk, tty)"),
        (["--pool", "tty", "--type", GVT_V58], f"no member of pool tty (0000:01:00.0) offers type {GVT_V58} on "
                                               "this host; see `mdev-hooks status`"),
        (["--pool", "desk", "--parent", GVT], "argument --pool: not allowed with --parent or --vf"),
    ):
        argv = ["add", "plain", *args] + ([] if "--type" in args else ["--type", GVT_V58])
        r = h.cli(*argv)
        assert r.code != 0 and line in r.err.replace(str(h.config), "<CONFIG>"), r
    assert (h.virsh_dir / "domains" / "plain.xml").read_text() == defined
