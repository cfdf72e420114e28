"""The one gate in front of every lab test: skip with the reason on a machine that cannot
build the lab, but fail in CI (``KUBEBASTION_REQUIRE_LAB=1``, set by ``.ci/run``), where a
skipped lab test would be a hidden gap, not a pass."""

from __future__ import annotations

import os

import pytest

import lab


def require_lab() -> None:
    reason = lab.unavailable_reason()
    if reason is None:
        return
    if os.environ.get("KUBEBASTION_REQUIRE_LAB") == "1":
        pytest.fail(f"KUBEBASTION_REQUIRE_LAB=1 but the lab cannot run here: {reason}")
    pytest.skip(reason)
