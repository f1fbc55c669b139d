"""Smoke run of benchmarks/run.py with tiny counts: it builds its venv (cached), mounts the FUSE fake, runs every
section and leaks nothing. The figures are NOT checked (these machines are noisy); `python3 benchmarks/run.py`
is the real run."""

import subprocess
import sys

import pytest
from support.hookrun import REPO, require_fuse

KEYS = {"front_ratio", "noop_ratio", "big_noop_ratio", "managed_ratio", "managed_cpu_ratio", "parallel_ratio",
        "serial_ratio", "leaks"}


def test_benchmark_runs_and_leaks_nothing() -> None:
    require_fuse("the benchmark")
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick"], capture_output=True,
                       text=True, timeout=1200, stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    last = r.stdout.strip().splitlines()[-1]
    fields = dict(item.split("=", 1) for item in last.split())
    assert set(fields) == KEYS, last
    assert fields["leaks"] == "0", r.stdout[-4000:]
    assert all(float(fields[k]) > 0 for k in KEYS - {"leaks"}), last
    for section in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5."):
        assert section in r.stdout


# ---- the no-op path: what the benchmark's targets rest on ----------------------------------------------------------

DOM = "5909df77-0544-4c25-b292-6027c2468ce1"
U = "4b20d080-1b54-4048-85b3-a6a62d165c01"


def _xml(hostdev_tag: str, meta: bool = False) -> bytes:
    md = (f'<metadata><mdev:mdevs xmlns:mdev="urn:mdev-hooks:domain:1"><mdev:device uuid="{U}" parent="p" '
          'type="t"/></mdev:mdevs></metadata>') if meta else ""
    return (f"<domain type='kvm'><name>vm</name><uuid>{DOM}</uuid>{md}<devices><disk type='file'/>"
            f"{hostdev_tag}<source><address uuid='{U}'/></source></hostdev></devices></domain>").encode()


MANAGED_TAGS = [
    "<hostdev mode='subsystem' type='mdev' managed='yes' model='vfio-pci'>",
    '<hostdev managed="yes" type="mdev">',
    "<hostdev\n   type = 'mdev'\n\tmanaged\n=\n'yes'>",
    "<hostdev type='&#109;dev' managed='yes'>",
    "<hostdev type='mdev' managed='y&#101;s'>",
    "<hostdev a='>' type='mdev' managed='yes'>",
]
NOT_MANAGED_TAGS = [
    "<hostdev mode='subsystem' type='mdev' managed='no' model='vfio-pci'>",
    "<hostdev mode='subsystem' type='mdev' model='vfio-pci'>",
    "<hostdev mode='subsystem' type='pci' managed='yes'>",
    "<hostdev type='MDEV' managed='yes'>",
    "<hostdev type='mdev' managed='Yes'>",
]


@pytest.mark.parametrize("tag", MANAGED_TAGS)
def test_noop_decision_never_misses_a_managed_mdev(tag: str) -> None:
    from mdev_hooks.domain import parse
    from mdev_hooks.errors import HookError
    from mdev_hooks.hook import mentions_mdev

    xml = _xml(tag)
    with pytest.raises(HookError, match="metadata does not say"):
        parse(xml)  # the parser sees a managed mdev (and no metadata for it)
    assert mentions_mdev(xml)
    assert parse(_xml(tag, meta=True)).devices and mentions_mdev(_xml(tag, meta=True))


@pytest.mark.parametrize("tag", NOT_MANAGED_TAGS)
def test_noop_decision_skips_domains_without_managed_mdev(tag: str) -> None:
    from mdev_hooks.domain import parse
    from mdev_hooks.hook import mentions_mdev

    assert parse(_xml(tag)).devices == []
    assert not mentions_mdev(_xml(tag))
    assert mentions_mdev(_xml(tag, meta=True))  # our metadata: always the full path (release, warnings)
    if "'mdev'" in tag:  # a DTD is refused by the parser (prepare fails) as before, once an mdev is named
        assert mentions_mdev(b"<!DOCTYPE domain>" + _xml(tag))


def test_noop_path_imports_nothing_heavy() -> None:
    """Every no-op case runs with no lxml/structlog/filelock, and not even typing/re/tomllib (-S: no site)."""
    cases = [
        ("prepare", "begin", _xml(NOT_MANAGED_TAGS[0])),
        ("release", "end", _xml(NOT_MANAGED_TAGS[1])),
        ("start", "begin", _xml(MANAGED_TAGS[0], meta=True)),
        ("migrate", "begin", _xml(NOT_MANAGED_TAGS[0])),  # migrate/restore begin check managed domains only
        ("migrate", "end", _xml(MANAGED_TAGS[0], meta=True)),
        ("stopped", "end", _xml(MANAGED_TAGS[0], meta=True)),
    ]
    code = (
        f"import io, sys\nsys.path.insert(0, {str(REPO)!r})\nfrom mdev_hooks.hook import main\n"
        f"for op, sub, xml in {cases!r}:\n"
        "    assert main(['vm', op, sub, '-'], io.BytesIO(xml)) == 0\n"
        "heavy = {'lxml', 'structlog', 'filelock', 'typing', 're', 'tomllib', 'dataclasses', 'json'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('mdev_hooks.')))\n"
    )
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=False, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['mdev_hooks.hook']"
