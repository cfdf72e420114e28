"""Nornir's log file holds what every run logged: it is created 0600, wherever the config,
the environment or Nornir's default puts it (the bastion's logs are 0600 too)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from kubebastion.runtime import build_run

REPO = Path(__file__).resolve().parents[2]


def example(folder: Path, logging: dict[str, str] | None) -> Path:
    shutil.copytree(REPO / "inventory", folder / "inventory")
    config = yaml.safe_load((REPO / "nornir_config.yaml").read_text())
    config.pop("logging")
    if logging is not None:
        config["logging"] = logging
    path = folder / "nornir_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(("logging", "where"), [
    ({"log_file": "logs-here.log"}, "beside"),
    (None, "cwd"),
], ids=["named in the config", "Nornir's default in the current folder"])
def test_the_nornir_log_is_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           logging: dict[str, str] | None, where: str) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("NORNIR_LOGGING_LOG_FILE", raising=False)
    config = example(tmp_path, logging)
    build_run(config).close()
    log = tmp_path / "logs-here.log" if where == "beside" else work / "nornir.log"
    assert log.is_file()
    assert log.stat().st_mode & 0o777 == 0o600
