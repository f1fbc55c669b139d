"""One safe XML parser (domain.parse_xml) for the hook and for `mdev-hooks add`/`drop` (admin/domedit.py), which
keeps the admin's comments; one metadata walker; one domain_uuid."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mdev_hooks import NS, domain
from mdev_hooks.admin import domedit
from mdev_hooks.errors import HookError

PACKAGE = Path(__file__).resolve().parents[2] / "mdev_hooks"
DOM = "4b20d080-1b54-4048-85b3-a6a62d165c01"
XML = f"""<domain type='kvm'>
  <name>vm1</name>
  <uuid>{DOM.upper()}</uuid>
  <!-- the admin's note -->
  <metadata>
    <mdev:mdevs xmlns:mdev="{NS}">
      <mdev:device uuid="1b2c3d4e-0000-4000-8000-000000000001" parent="mtty" type="mtty-1"/>
      <device uuid="1b2c3d4e-0000-4000-8000-000000000002" parent="mtty" type="mtty-2"/>
    </mdev:mdevs>
  </metadata>
  <devices><?pi keep?></devices>
</domain>
""".encode()


def test_the_hook_drops_comments_and_domedit_keeps_them() -> None:
    assert b"the admin's note" not in domedit.serialize(domain.parse_xml(XML))
    kept = domedit.serialize(domedit.parse(XML))
    assert b"<!-- the admin's note -->" in kept and b"<?pi keep?>" in kept


@pytest.mark.parametrize("bad", [
    b'<!DOCTYPE domain [<!ENTITY x "y">]><domain><name>&x;</name></domain>',
    b"<domain><name>vm1</name>",
    b"<network/>",
    b" " * (domain.MAX_XML_BYTES + 1),
])
@pytest.mark.parametrize("keep_comments", [False, True])
def test_both_modes_refuse_the_same_documents(bad: bytes, keep_comments: bool) -> None:
    with pytest.raises(HookError, match="domain XML"):
        domain.parse_xml(bad, keep_comments=keep_comments)


def test_one_metadata_walker_finds_namespaced_and_plain_entries() -> None:
    entries = domain.metadata_devices(domedit.parse(XML))
    assert [e.get("type") for e in entries] == ["mtty-1", "mtty-2"]


def test_domain_uuid_is_canonical_and_required() -> None:
    assert domain.domain_uuid(domain.parse_xml(XML)) == DOM
    with pytest.raises(HookError, match="domain <uuid>"):
        domain.domain_uuid(domain.parse_xml(b"<domain><name>vm1</name></domain>"))


def test_no_other_module_builds_an_xml_parser_or_parses_xml() -> None:
    """etree.XMLParser and etree.fromstring/parse/XML are called in domain.py only."""
    calls = {"XMLParser", "fromstring", "parse", "XML", "iterparse"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "domain.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in calls and isinstance(node.value, ast.Name)
                    and node.value.id == "etree"):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: etree.{node.attr}")
    assert found == []
