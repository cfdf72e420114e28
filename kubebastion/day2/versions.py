"""Kubernetes versions for ``upgrade-cluster.yml``: parse, compare, refuse what kubespray
does not support.

kubespray upgrades one minor version at a time (``docs/operations/upgrades.md``: going
"straight to the latest release is unsupported and likely to break something"; kubeadm
itself refuses a skip of a minor version) and never downgrades. kubespray's
``kube_version`` is written without the ``v`` (``1.35.4``); the API's ``/version`` says
``v1.35.4``; both are accepted here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubebastion.errors import ConfigError

_VERSION = re.compile(r"^v?(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)$")


@dataclass(frozen=True, order=True)
class KubeVersion:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        """kubespray's spelling (``kube_version: 1.35.4``)."""
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def tag(self) -> str:
        """The API's spelling (``gitVersion: v1.35.4``)."""
        return f"v{self}"


def parse_version(text: object, what: str = "kube_version") -> KubeVersion:
    """``1.35.4`` or ``v1.35.4``; anything else (a pre-release, ``1.35``) is refused."""
    match = _VERSION.fullmatch(str(text).strip())
    if not match:
        raise ConfigError(f"{what} {text!r} is not a Kubernetes version like 1.35.4 or v1.35.4")
    return KubeVersion(int(match["major"]), int(match["minor"]), int(match["patch"]))


def api_version(git_version: str) -> KubeVersion | None:
    """The running version from ``/version``'s ``gitVersion`` (``v1.35.4+k3s1`` style
    suffixes dropped); None when the API did not say."""
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", git_version.strip())
    return KubeVersion(*(int(g) for g in match.groups())) if match else None


@dataclass(frozen=True)
class UpgradePlan:
    current: KubeVersion
    target: KubeVersion

    @property
    def needed(self) -> bool:
        return self.target != self.current

    def describe(self) -> str:
        if not self.needed:
            return f"Kubernetes is already {self.target.tag}: nothing to upgrade"
        return f"upgrade Kubernetes {self.current.tag} -> {self.target.tag}"


class UpgradeRefused(ConfigError):
    """kubespray does not support this version change; the message says the way that is."""


def plan_upgrade(current: KubeVersion, target: KubeVersion) -> UpgradePlan:
    """The upgrade from the running version to ``target``, or why kubespray cannot do it."""
    if target.major != current.major:
        raise UpgradeRefused(f"cannot change the major version ({current.tag} -> "
                             f"{target.tag}): kubespray upgrades one minor version at a time")
    if target < current:
        raise UpgradeRefused(f"the cluster runs {current.tag}; {target.tag} would be a "
                             "downgrade, which kubespray (and kubeadm) do not support")
    if target.minor - current.minor > 1:
        step = KubeVersion(current.major, current.minor + 1, 0)
        raise UpgradeRefused(
            f"{current.tag} -> {target.tag} skips {target.minor - current.minor - 1} minor "
            f"version(s), which kubespray does not support (docs/operations/upgrades.md): "
            f"upgrade to a {step.major}.{step.minor}.x release first, then to {target.tag}")
    return UpgradePlan(current, target)


def parse_serial(value: object) -> int:
    """``serial``: how many nodes upgrade-cluster.yml takes at a time (at least 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"--serial {value!r} must be a whole number of nodes, 1 or more")
    return value


def planned_by_inventory(kube_version: object, running: str) -> UpgradePlan | None:
    """What ``deploy`` does about ``kube_version`` in kubespray_vars, given the API's
    ``gitVersion``: an upgrade when it is newer (refused as ``plan_upgrade`` refuses),
    None when it is not set, the API did not say, or it is what runs."""
    current = api_version(running)
    if kube_version is None or current is None:
        return None
    plan = plan_upgrade(current, parse_version(kube_version, "kube_version (kubespray_vars)"))
    return plan if plan.needed else None
