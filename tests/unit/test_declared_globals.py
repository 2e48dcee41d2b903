"""Globals declared by techniques (Technique.touches): snapshotted, diffed and restored like torch's,
and the registry's own rules for a technique."""

from __future__ import annotations

import types

import pytest

from perfsuite.globalstate import GlobalSetting, GlobalSnapshot, LeakedGlobalsError
from perfsuite.optimizations import GROUPS, REGISTRY, Technique, register_technique
from perfsuite.registry import RegistryError

FLAGS = types.SimpleNamespace(fast=False)


def _technique(name: str = "fast-path", group: str = "speed", **fields) -> Technique:
    return Technique(
        name=name, group=group, summary="test", rank=50, verify=lambda pipe, target: [], **fields
    )


def test_a_declared_global_is_snapshotted_checked_and_restored() -> None:
    setting = GlobalSetting.attribute(FLAGS, "fast", "flags.fast")
    with REGISTRY.layer():
        register_technique(_technique(touches=(setting,)), "test")
        before = GlobalSnapshot.take()
        assert before.values["flags.fast"] is False
        FLAGS.fast = True
        with pytest.raises(
            LeakedGlobalsError,
            match=r"combo x left process-wide settings changed:\n  flags.fast: False -> True",
        ):
            before.assert_unchanged("combo x")
        before.restore()
        assert FLAGS.fast is False
    assert "flags.fast" not in GlobalSnapshot.take().values  # gone with the technique's session


def test_attribute_names_its_module_and_refuses_a_missing_attribute() -> None:
    assert GlobalSetting.attribute(types, "SimpleNamespace").name == "types.SimpleNamespace"
    with pytest.raises(AttributeError, match="has no attribute 'nope' to track"):
        GlobalSetting.attribute(FLAGS, "nope")


def test_a_failing_getter_names_the_global() -> None:
    def broken() -> bool:
        raise OSError("device gone")

    with REGISTRY.layer():
        register_technique(_technique(touches=(GlobalSetting("lib.mode", broken, lambda v: None),)), "test")
        with pytest.raises(
            RuntimeError, match=r"reading the declared global 'lib\.mode' raised OSError: device gone"
        ):
            GlobalSnapshot.take()


def test_a_new_group_comes_after_perfsuite_groups_alphabetically() -> None:
    with REGISTRY.layer():
        register_technique(_technique("b-tech", "zeta"), "test")
        register_technique(_technique("a-tech", "alpha"), "test")
        assert tuple(GROUPS)[-2:] == ("alpha", "zeta")
        assert GROUPS.index("quant") < GROUPS.index("alpha")
    assert "zeta" not in GROUPS


@pytest.mark.parametrize(
    ("technique", "message"),
    [
        (_technique("int4", "dtype"), "the dtype group holds only fp32, bf16, fp16"),
        (_technique(group="a group"), "invalid group 'a group'"),
        (_technique(touches=("flags.fast",)), "touches holds a str; declare each global as a GlobalSetting"),
        (
            _technique(touches=(GlobalSetting.attribute(FLAGS, "fast"),) * 2),
            "touches declares a global twice",
        ),
        (_technique(apply="not callable"), "apply is not callable"),
    ],
)
def test_a_technique_that_breaks_the_contract_is_refused(technique: Technique, message: str) -> None:
    with REGISTRY.layer(), pytest.raises(RegistryError, match=message):
        register_technique(technique, "test")
