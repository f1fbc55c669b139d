"""The ownership ledger in a temporary state_dir: exclusive claims, update, drop, corrupt and old-format files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.ids import DOM_A, DOM_B, GVT, GVT_V58, MTTY, MTTY_1, NAME_A, NAME_B, U1, U2
from support.product import CREATED, INTENT, CorruptClaim, Ledger, claim_key, new_claim


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return Ledger(str(state))


def test_claim_is_exclusive_across_domains_and_parents(ledger: Ledger) -> None:
    mine = new_claim(U1, DOM_A, NAME_A, GVT, GVT_V58, INTENT)
    assert ledger.claim(mine) is None
    theirs = new_claim(U1, DOM_B, NAME_B, MTTY, MTTY_1, INTENT)
    assert ledger.claim(theirs) == mine  # refused: the existing claim comes back
    assert ledger.get(U1) == mine
    assert ledger.claim(mine) == mine  # not even the owner takes it twice
    assert [p.name for p in Path(ledger.dir).iterdir()] == [f"{U1}.json"]  # no temp file left behind


def test_update_then_drop(ledger: Ledger) -> None:
    claim = new_claim(U1, DOM_A, NAME_A, GVT, GVT_V58, INTENT, attrs=("assign_adapter=5",))
    ledger.claim(claim)
    ledger.update(claim.with_state(CREATED))
    got = ledger.get(U1)
    assert got is not None and got.state == CREATED and got.attrs == ("assign_adapter=5",)
    assert ledger.for_domain(DOM_A)[0] == [got] and ledger.for_domain(DOM_B)[0] == []
    ledger.drop(U1)
    assert ledger.get(U1) is None and ledger.all() == ([], [])
    ledger.drop(U1)  # already gone: fine


def test_file_holds_the_claim_as_json(ledger: Ledger) -> None:
    ledger.claim(new_claim(U1, DOM_A, NAME_A, GVT, GVT_V58, INTENT))
    data = json.loads((Path(ledger.dir) / f"{U1}.json").read_text())
    assert {k: data[k] for k in ("domain_uuid", "domain_name", "parent", "type", "state")} == {
        "domain_uuid": DOM_A, "domain_name": NAME_A, "parent": GVT, "type": GVT_V58, "state": INTENT}
    assert U1 in data.values()  # the key is in the file (its field name may change; its value may not)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"unexpected": 1}', ""])
def test_corrupt_file_is_reported_not_guessed(ledger: Ledger, content: str) -> None:
    ledger.claim(new_claim(U2, DOM_A, NAME_A, GVT, GVT_V58, CREATED))
    (Path(ledger.dir) / f"{U1}.json").write_text(content)
    with pytest.raises(CorruptClaim, match="corrupt"):
        ledger.get(U1)
    claims, problems = ledger.all()
    assert [claim_key(c) for c in claims] == [U2]
    assert len(problems) == 1 and f"{U1}.json" in problems[0]


def test_file_naming_another_key_is_corrupt(ledger: Ledger) -> None:
    ledger.claim(new_claim(U2, DOM_A, NAME_A, GVT, GVT_V58, CREATED))
    (Path(ledger.dir) / f"{U2}.json").rename(Path(ledger.dir) / f"{U1}.json")
    with pytest.raises(CorruptClaim, match="names another"):
        ledger.get(U1)


OLD_FORMAT = {"mdev": U1, "domain_uuid": DOM_B, "domain_name": NAME_B, "parent": MTTY, "type": MTTY_1,
              "state": "created", "pid": 4242, "time": 1700000000.0, "attrs": [], "pf": "", "kind": "mdev"}


def test_claim_file_of_the_old_format_is_read(ledger: Ledger) -> None:
    """A claim written before the field `mdev` was renamed (a hook upgraded while domains run) still counts."""
    (Path(ledger.dir) / f"{U1}.json").write_text(json.dumps(OLD_FORMAT) + "\n")
    claim = ledger.get(U1)
    assert claim is not None and claim_key(claim) == U1
    assert (claim.domain_uuid, claim.domain_name, claim.parent, claim.type, claim.state) == (
        DOM_B, NAME_B, MTTY, MTTY_1, "created")
    other = new_claim(U1, DOM_A, NAME_A, MTTY, MTTY_1, INTENT)
    refused = ledger.claim(other)
    assert refused is not None and refused.domain_uuid == DOM_B
