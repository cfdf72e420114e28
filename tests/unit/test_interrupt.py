"""The Ctrl-C summary names the command as the operator typed it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubebastion import interrupt


@pytest.fixture(autouse=True)
def no_stage() -> Iterator[None]:
    yield
    interrupt._STAGE.clear()


@pytest.mark.parametrize("command", ["invoke deploy", "kubebastion deploy"])
def test_the_summary_names_the_command_typed(command: str) -> None:
    interrupt.set_stage("step kubespray")
    said = interrupt.summary(command)
    assert said.startswith(f"interrupted `{command}` at step kubespray; "
                           "nothing was running on the hosts; "), said
    assert "\n" not in said
