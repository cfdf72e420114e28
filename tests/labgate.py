"""The one gate in front of every lab test: skip with the reason on a machine that cannot
build the lab, but fail in CI (``KUBEBASTION_REQUIRE_LAB=1``, set by ``.ci/run``), where a
skipped lab test would be a hidden gap, not a pass."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lab


def require_lab() -> None:
    reason = lab.unavailable_reason()
    if reason is None:
        return
    if os.environ.get("KUBEBASTION_REQUIRE_LAB") == "1":
        pytest.fail(f"KUBEBASTION_REQUIRE_LAB=1 but the lab cannot run here: {reason}")
    pytest.skip(reason)


#: Real kubespray for the tests that run it: unmodified upstream v2.31.0, kept beside the
#: project (``../shared/kubespray/``, as CI checks it out) because nothing can be cloned
#: from a git host here. ``KUBEBASTION_REAL_KUBESPRAY`` names another copy (a worktree).
REAL_KUBESPRAY_ENV = "KUBEBASTION_REAL_KUBESPRAY"
REAL_KUBESPRAY_DEFAULT = (Path(__file__).resolve().parents[1].parent / "shared" / "kubespray"
                          / "kubespray-v2.31.0.tar.gz")
#: Its sha256, from ../shared/kubespray/README.md.
REAL_KUBESPRAY_SHA256 = "c70722f91850b5cb200cface0f3985f29fac53c06cba07068b60de6505d858e6"


def require_real_kubespray() -> Path:
    """The real kubespray tarball, or a skip naming where it was looked for (a failure in
    CI, where a missing tarball would hide the only tests of the real thing)."""
    path = Path(os.environ.get(REAL_KUBESPRAY_ENV) or REAL_KUBESPRAY_DEFAULT)
    if path.is_file():
        return path
    reason = (f"real kubespray tarball not found at {path} (put kubespray-v2.31.0.tar.gz "
              f"in ../shared/kubespray/ or set {REAL_KUBESPRAY_ENV})")
    if os.environ.get("KUBEBASTION_REQUIRE_LAB") == "1":
        pytest.fail(f"KUBEBASTION_REQUIRE_LAB=1 but {reason}")
    pytest.skip(reason)
