"""Nornir's log file is set up by kubebastion, once per run: no warning under a host
program's own logging, and each run in one process logs to its own file."""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from nornir.core.task import Result, Task

from kubebastion.runtime import build_run

REPO = Path(__file__).resolve().parents[2]


def config_with_log(folder: Path, log_file: str) -> Path:
    shutil.copytree(REPO / "inventory", folder / "inventory")
    config = yaml.safe_load((REPO / "nornir_config.yaml").read_text())
    config["logging"] = {"log_file": log_file}
    path = folder / "nornir_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def noop(task: Task) -> Result:
    return Result(host=task.host)


@pytest.fixture
def root_handler() -> Iterator[None]:
    """A host program that configured logging for itself (as pytest's capture does)."""
    handler = logging.NullHandler()
    logging.getLogger().addHandler(handler)
    yield
    logging.getLogger().removeHandler(handler)


@pytest.mark.usefixtures("root_handler")
def test_a_run_under_a_host_programs_logging_warns_nothing(tmp_path: Path) -> None:
    config = config_with_log(tmp_path, "nornir.log")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Nornir's ConflictingConfigurationWarning among them
        build_run(config).close()


def test_each_run_in_one_process_logs_to_its_own_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NORNIR_LOGGING_LOG_FILE", raising=False)
    logs = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        run = build_run(config_with_log(tmp_path / name, f"{name}.log"))
        run.nornir.run(task=noop, name=f"task-of-the-{name}-run")
        run.close()
        logs.append((tmp_path / name / f"{name}.log").read_text())
    assert "task-of-the-first-run" in logs[0]
    assert "task-of-the-second-run" in logs[1], "the second run logged to the first's file"
    assert "task-of-the-second-run" not in logs[0]


def test_logging_disabled_writes_no_file_and_leaves_no_handler(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NORNIR_LOGGING_ENABLED", raising=False)
    build_run(config_with_log(tmp_path, "on.log")).close()
    config = yaml.safe_load((tmp_path / "nornir_config.yaml").read_text())
    config["logging"] = {"enabled": False, "log_file": "off.log"}
    (tmp_path / "nornir_config.yaml").write_text(yaml.safe_dump(config))
    build_run(tmp_path / "nornir_config.yaml").close()
    assert not (tmp_path / "off.log").exists()
    assert not [h for h in logging.getLogger("nornir").handlers
                if getattr(h, "baseFilename", "") == str(tmp_path / "on.log")]


def test_a_log_file_that_cannot_be_opened_is_one_clear_error(tmp_path: Path) -> None:
    from kubebastion.errors import ConfigError

    config = config_with_log(tmp_path, "no-such-folder/nornir.log")
    with pytest.raises(ConfigError, match=r"cannot open Nornir's log file .*no-such-folder"):
        build_run(config)
