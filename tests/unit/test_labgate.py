"""The lab gate: a skip with the reason on a machine without the lab, a failure in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

import lab
from tests.labgate import REAL_KUBESPRAY_ENV, require_lab, require_real_kubespray


def test_a_machine_without_the_lab_skips_with_the_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab, "unavailable_reason", lambda: "not root")
    monkeypatch.delenv("KUBEBASTION_REQUIRE_LAB", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not root"):
        require_lab()


def test_ci_fails_instead_of_skipping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab, "unavailable_reason", lambda: "no network namespaces")
    monkeypatch.setenv("KUBEBASTION_REQUIRE_LAB", "1")
    with pytest.raises(pytest.fail.Exception, match="no network namespaces"):
        require_lab()


def test_a_machine_with_the_lab_passes_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab, "unavailable_reason", lambda: None)
    monkeypatch.setenv("KUBEBASTION_REQUIRE_LAB", "1")
    assert require_lab() is None


def test_without_the_real_kubespray_tarball_its_tests_skip_with_where_it_was_looked_for(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(REAL_KUBESPRAY_ENV, str(tmp_path / "absent.tar.gz"))
    monkeypatch.delenv("KUBEBASTION_REQUIRE_LAB", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"absent\.tar\.gz"):
        require_real_kubespray()


def test_ci_fails_without_the_real_kubespray_tarball(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(REAL_KUBESPRAY_ENV, str(tmp_path / "absent.tar.gz"))
    monkeypatch.setenv("KUBEBASTION_REQUIRE_LAB", "1")
    with pytest.raises(pytest.fail.Exception, match="KUBEBASTION_REQUIRE_LAB=1 but real"):
        require_real_kubespray()


def test_the_real_kubespray_tarball_is_found(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    tarball = tmp_path / "kubespray-v2.31.0.tar.gz"
    tarball.write_bytes(b"x")
    monkeypatch.setenv(REAL_KUBESPRAY_ENV, str(tarball))
    assert require_real_kubespray() == tarball
