"""The lab gate: a skip with the reason on a machine without the lab, a failure in CI."""

from __future__ import annotations

import pytest

import lab
from tests.labgate import require_lab


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
