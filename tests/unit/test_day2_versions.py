"""Upgrade rules: one minor version at a time, never down (kubespray v2.31.0
docs/operations/upgrades.md), each case a row of data."""

from __future__ import annotations

import pytest

from kubebastion.day2.versions import (
    KubeVersion,
    UpgradeRefused,
    api_version,
    parse_serial,
    parse_version,
    plan_upgrade,
    planned_by_inventory,
)
from kubebastion.errors import ConfigError

PLANS = [
    ("one minor up", "v1.34.3", "1.35.4", True, "upgrade Kubernetes v1.34.3 -> v1.35.4"),
    ("a patch release", "v1.35.1", "v1.35.4", True, "upgrade Kubernetes v1.35.1 -> v1.35.4"),
    ("already there", "v1.35.4", "1.35.4", False,
     "Kubernetes is already v1.35.4: nothing to upgrade"),
]


@pytest.mark.parametrize(("current", "target", "needed", "described"),
                         [c[1:] for c in PLANS], ids=[c[0] for c in PLANS])
def test_plan_upgrade(current: str, target: str, needed: bool, described: str) -> None:
    plan = plan_upgrade(parse_version(current), parse_version(target))
    assert plan.needed is needed
    assert plan.describe() == described


REFUSED = [
    ("two minors up", "v1.33.2", "1.35.4",
     r"v1.33.2 -> v1.35.4 skips 1 minor version\(s\).*upgrade to a 1.34.x release first"),
    ("a downgrade", "v1.35.4", "1.34.9", "would be a downgrade"),
    ("a patch downgrade", "v1.35.4", "1.35.3", "would be a downgrade"),
    ("a major change", "v1.35.4", "2.0.0", "cannot change the major version"),
]


@pytest.mark.parametrize(("current", "target", "message"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_plan_upgrade_refusals(current: str, target: str, message: str) -> None:
    with pytest.raises(UpgradeRefused, match=message):
        plan_upgrade(parse_version(current), parse_version(target))


@pytest.mark.parametrize("text", ["1.35", "v1.35.4-rc.1", "latest", "", "1.35.4; rm -rf /"])
def test_parse_version_refuses_what_is_not_a_release(text: str) -> None:
    with pytest.raises(ConfigError, match=r"is not a Kubernetes version like 1\.35\.4"):
        parse_version(text, "--kube-version")


def test_versions_in_both_spellings() -> None:
    version = parse_version("v1.35.4")
    assert (str(version), version.tag) == ("1.35.4", "v1.35.4")
    assert api_version("v1.35.4+lab") == KubeVersion(1, 35, 4)
    assert api_version("") is None


@pytest.mark.parametrize(("value", "ok"), [(1, True), (3, True), (0, False), (-1, False),
                                           (True, False), ("2", False)])
def test_parse_serial(value: object, ok: bool) -> None:
    if ok:
        assert parse_serial(value) == value
    else:
        with pytest.raises(ConfigError, match="--serial"):
            parse_serial(value)


BY_INVENTORY = [
    ("newer in kubespray_vars", "1.35.4", "v1.34.7", "upgrade Kubernetes v1.34.7 -> v1.35.4"),
    ("the same", "1.35.4", "v1.35.4", None),
    ("not set", None, "v1.35.4", None),
    ("API did not say", "1.35.4", "", None),
]


@pytest.mark.parametrize(("wanted", "running", "described"), [c[1:] for c in BY_INVENTORY],
                         ids=[c[0] for c in BY_INVENTORY])
def test_planned_by_inventory(wanted: str | None, running: str, described: str | None) -> None:
    plan = planned_by_inventory(wanted, running)
    assert (plan.describe() if plan else None) == described


@pytest.mark.parametrize(("wanted", "message"), [
    ("1.33.0", "would be a downgrade"), ("1.37.0", "skips 1 minor")])
def test_planned_by_inventory_refusals(wanted: str, message: str) -> None:
    with pytest.raises(UpgradeRefused, match=message):
        planned_by_inventory(wanted, "v1.35.4")
