"""A kind is one class plus its registration: a toy kind (one file per device in a directory) registered here runs
through the same prepare/release skeleton, ledger, locks and rollback as mdev and nvidia-vf, with no other edit.

Invariant: this module touches the product only through core.kinds' registry and the skeleton's entry points
(prepare, release, validate); if the skeleton ever branches on a built-in kind again, these tests fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mdev_hooks.config import Config
from mdev_hooks.core import kinds
from mdev_hooks.core.env import Env, Existing, Step
from mdev_hooks.core.kinds import DeviceKind, describe, register
from mdev_hooks.core.ledger import Claim, Ledger
from mdev_hooks.core.plan import validate
from mdev_hooks.core.prepare import prepare
from mdev_hooks.core.release import release
from mdev_hooks.domain import Domain, ManagedDevice
from mdev_hooks.enums import Action
from mdev_hooks.errors import HookError
from mdev_hooks.kernel import Sysfs

TOY = "toy-file"
DOM = "6f1c7c1e-0000-4000-8000-00000000d001"
OTHER = "6f1c7c1e-0000-4000-8000-00000000d002"


class ToyFile(DeviceKind):
    """A device is the file <dir>/<key> holding "parent type"; a parent is a subdirectory <dir>/parents/<parent>."""

    kind = TOY
    noun = "toy"
    article = "a"
    key_label = "TOY"
    bus = "toy"
    counts_instances = False
    events: ClassVar[dict[str, str]] = {
        "kept": "toy.kept", "would_create": "toy.would_make", "would_adopt": "toy.would_adopt",
        "adopted": "toy.adopted", "write_failed": "toy.make_failed", "written": "toy.made",
        "unadopted": "toy.unadopted", "clear_failed": "toy.unmake_failed", "cleared": "toy.unmade"}
    kept_reason = "already made"
    adopt_reason = "found, owned by no domain"
    unused_reason = "never unused"

    def __init__(self, where: Path) -> None:
        self.dir = where
        self.fail_write: set[str] = set()  # keys whose write fails (EIO), to see the rollback

    def label(self, m: ManagedDevice, mapped: str) -> str:
        return f"toy {m.key} ({m.type} in {m.parent}{mapped})"

    def current(self, sysfs: Sysfs, key: str) -> Existing | None:
        try:
            parent, type_ = (self.dir / key).read_text().split()
        except FileNotFoundError:
            return None
        return Existing(parent, type_)

    def plan(self, env: Env, m: ManagedDevice, claim: Claim | None, taken: set[str]) -> Step:
        now = self.current(env.sysfs, m.key)
        if now is not None:
            return Step(m, Action.KEEP if claim is not None else Action.ADOPT, None, None)
        problem = None if (self.dir / "parents" / m.parent).is_dir() else \
            f"cannot make {describe(m)}: no parent {m.parent}"
        return Step(m, Action.CREATE, None, problem)

    def missing(self, env: Env, m: ManagedDevice) -> bool:
        return False

    def write(self, sysfs: Sysfs, m: ManagedDevice) -> None:
        if m.key in self.fail_write:
            raise OSError(5, "Input/output error")
        (self.dir / m.key).write_text(f"{m.parent} {m.type}\n")

    def write_error(self, env: Env, step: Step, e: OSError) -> HookError:
        return HookError(f"cannot make {describe(step.device)}: {e.strerror}")

    def verify(self, sysfs: Sysfs, m: ManagedDevice) -> str | None:
        return None if self.current(sysfs, m.key) == Existing(m.parent, m.type) else "not made"

    def clear(self, sysfs: Sysfs, key: str) -> None:
        os.unlink(self.dir / key)

    def clear_error(self, c: Claim, e: OSError) -> str:
        return f"could not unmake toy {c.key}: {e.strerror}"


@dataclass
class Events:
    """A logger that keeps (event, fields) in order, bound fields included."""

    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    bound: dict[str, Any] = field(default_factory=dict)

    def bind(self, **kw: Any) -> Events:
        return Events(self.seen, {**self.bound, **kw})

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.seen.append((event, {**self.bound, **kw}))

    def names(self) -> list[str]:
        return [e for e, _ in self.seen]


@pytest.fixture
def toy(tmp_path: Path) -> Iterator[tuple[ToyFile, Env, Events]]:
    where = tmp_path / "toys"
    (where / "parents" / "shelf").mkdir(parents=True)
    kind = ToyFile(where)
    register(kind)
    log = Events()
    cfg = Config(sysfs_root=str(tmp_path / "sys"), state_dir=str(tmp_path / "state"),
                 lock_dir=str(tmp_path / "locks"), parent_wait=0.0, remove_timeout=0.1)
    yield kind, Env(cfg, Sysfs(cfg.sysfs_root), Ledger(cfg.state_dir), log), log
    kinds._loaded.pop(TOY, None)


def dom(*keys: str, parent: str = "shelf", uuid: str = DOM) -> Domain:
    return Domain("vm-toy", uuid, devices=[ManagedDevice(k, parent, "cube", kind=TOY) for k in keys])  # type: ignore[arg-type]


def test_prepare_makes_claims_and_release_clears_by_the_claims_kind(toy: tuple[ToyFile, Env, Events]) -> None:
    kind, env, log = toy
    prepare(dom("t1", "t2"), env)
    assert sorted(p.name for p in kind.dir.iterdir() if p.is_file()) == ["t1", "t2"]
    claims, problems = env.ledger.for_domain(DOM)
    assert problems == [] and sorted((c.key, c.kind, c.state) for c in claims) == [
        ("t1", TOY, "created"), ("t2", TOY, "created")]
    assert log.names().count("toy.made") == 2
    release(DOM, env)  # from the ledger alone: no domain XML, the claim says which kind clears it
    assert not [p for p in kind.dir.iterdir() if p.is_file()]
    assert env.ledger.for_domain(DOM) == ([], [])
    assert log.names().count("toy.unmade") == 2


def test_a_failed_write_rolls_back_the_devices_made_before_it(toy: tuple[ToyFile, Env, Events]) -> None:
    kind, env, log = toy
    kind.fail_write.add("t2")
    with pytest.raises(HookError, match=r"cannot make toy t2 \(cube in shelf\): Input/output error"):
        prepare(dom("t1", "t2"), env)
    assert not [p for p in kind.dir.iterdir() if p.is_file()]
    assert env.ledger.for_domain(DOM) == ([], [])
    assert "toy.make_failed" in log.names() and "mdev.rollback" in log.names()


def test_validation_uses_the_kinds_plan_and_the_shared_ownership_line(toy: tuple[ToyFile, Env, Events]) -> None:
    _, env, _ = toy
    assert validate(dom("t1", parent="attic"), env)[0].problem == "cannot make toy t1 (cube in attic): no parent attic"
    prepare(dom("t1"), env)
    steps = validate(dom("t1", uuid=OTHER), env)
    assert steps[0].problem == (f"cannot use toy t1: the ledger gives it to domain vm-toy ({DOM}); two domains "
                                "cannot share a toy")
    assert [s.action for s in validate(dom("t1"), env)] == [Action.KEEP]


def test_an_unknown_kind_is_one_line(toy: tuple[ToyFile, Env, Events]) -> None:
    with pytest.raises(HookError, match="unknown device kind 'nope'"):
        kinds.kind_of("nope")


def test_a_kind_module_is_loaded_only_when_a_device_of_that_kind_is_met() -> None:
    """The registry's laziness: a hook run for mdevs only never imports the NVIDIA kind's module."""
    code = ("import sys\nfrom mdev_hooks.core import kinds, plan, prepare, release\n"
            "assert kinds.kind_of('mdev').noun == 'mdev'\n"
            "print(sorted(m for m in sys.modules if m.startswith('mdev_hooks.core.kinds.')))\n")
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["['mdev_hooks.core.kinds.base',", "'mdev_hooks.core.kinds.mdev']"]
