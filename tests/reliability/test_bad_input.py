"""Bad command-line values and unusable Nornir configs: each ends with one line on stderr
saying what is wrong, where and what to do, exit 2, no traceback, before any SSH.

These need no lab: each run stops before connecting anywhere. The configs are copies of
the repository's example inventory; its addresses must never be contacted, so the copies
name a private key that does not exist (a run that got past the check would stop there,
before any connection).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.reliability.conftest import Figures
from tests.reliability.helpers import INVOKE, REPO, invoke_env

#: The section title in docs/reliability.md.
TITLE = "Bad command-line values and Nornir configs: one line, exit 2"


def example_config(folder: Path, edit: Callable[[Path], None] | None = None) -> Path:
    """A copy of the example inventory and its Nornir config in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "inventory", folder / "inventory")
    shutil.copy(REPO / "nornir_config.yaml", folder / "nornir_config.yaml")
    defaults_file = folder / "inventory" / "defaults.yaml"
    defaults = yaml.safe_load(defaults_file.read_text())
    defaults["connection_options"]["fabric"]["extras"]["private_key"] = str(folder / "no-key")
    defaults_file.write_text(yaml.safe_dump(defaults))
    if edit is not None:
        edit(folder / "inventory")
    return folder / "nornir_config.yaml"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``invoke`` with no terminal at all: stdin empty, a session of its own."""
    return subprocess.run([INVOKE, *map(str, args)], cwd=REPO, env=invoke_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, check=False, start_new_session=True)


def one_line_exit_2(figures: Figures, fault: str, result: subprocess.CompletedProcess[str],
                    *words: str) -> bool:
    """Record and judge: exit 2, stderr one line holding ``words``, no traceback."""
    lines = result.stderr.strip().splitlines()
    ok = (result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr
          and all(w in result.stderr for w in words))
    figures.record(fault, "one line naming it, exit 2", f"exit {result.returncode}, "
                   f"{len(lines)} line(s)", ok, detail=" / ".join(lines)[-300:])
    return ok


def _workerz(inventory: Path) -> None:
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    hosts["k8s-w1"]["groups"] = ["workerz"]
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts))


def _hosts_as_list(inventory: Path) -> None:
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    (inventory / "hosts.yaml").write_text(yaml.safe_dump([{k: v} for k, v in hosts.items()]))


NUMBERS = [
    (("deploy", "--timeout=abc"), ("--timeout=abc", "whole number of seconds")),
    (("kubespray", "--timeout=abc"), ("--timeout=abc", "whole number of seconds")),
    (("fetch-kubeconfig", "--timeout=abc"), ("--timeout=abc", "whole number of seconds")),
    (("deploy", "--timeout=-5"), ("--timeout=-5", "at least 1")),
    (("fetch-kubeconfig", "--tunnel-port=abc"), ("--tunnel-port=abc", "TCP port")),
    (("tunnel", "--port=abc"), ("--port=abc", "TCP port, 1 to 65535")),
    (("tunnel", "--port=99999"), ("--port=99999", "TCP port, 1 to 65535")),
    (("lab.up", "--workers=x"), ("--workers=x", "number of nodes")),
]


def test_bad_numbers_on_the_command_line(tmp_path: Path, figures: Figures) -> None:
    """invoke converted these with ``int()``/``float()`` in its parser (a traceback) and
    let a negative timeout through."""
    config = example_config(tmp_path)
    failed = []
    for args, words in NUMBERS:
        result = run(*args, "--config", config) if args[0] != "lab.up" else run(*args)
        if not one_line_exit_2(figures, f"`invoke {' '.join(args)}`", result, *words):
            failed.append(f"{args}: exit {result.returncode}\n{result.stderr[-600:]}")
    assert not failed, "\n".join(failed)


def test_a_tunnel_port_already_in_use(tmp_path: Path, figures: Figures) -> None:
    config = example_config(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run("tunnel", "--config", config, "--port", str(port))
    assert one_line_exit_2(figures, "`invoke tunnel --port` on a port in use", result,
                           f"127.0.0.1:{port}", "in use", "--port"), result.stderr


def test_ask_sudo_password_without_a_terminal(tmp_path: Path, figures: Figures) -> None:
    result = run("check", "--ask-sudo-password", "--config", example_config(tmp_path))
    assert one_line_exit_2(figures, "`--ask-sudo-password` with no terminal", result,
                           "--ask-sudo-password", "no terminal", "KUBEBASTION_SUDO_PASSWORD"
                           ), result.stderr


CONFIGS: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "`--config` naming a directory": (
        lambda tmp: example_config(tmp).parent,
        ("is a directory", "--config", "nornir_config.yaml")),
    "a host in a group that does not exist (`workerz`)": (
        lambda tmp: example_config(tmp, _workerz),
        ("k8s-w1", "'workerz'", "groups.yaml does not define", "workers")),
    "a hosts.yaml that is a list": (
        lambda tmp: example_config(tmp, _hosts_as_list),
        ("hosts.yaml must be a mapping", "not a list")),
    "an empty Nornir config": (
        lambda tmp: (tmp.mkdir(), tmp / "empty.yaml", (tmp / "empty.yaml").write_text(""))[1],
        ("hosts.yaml does not exist", "empty.yaml")),
    "a hosts.yaml given as `--config`": (
        lambda tmp: example_config(tmp).parent / "inventory" / "hosts.yaml",
        ("is not a Nornir config", "bastion", "inventory file")),
}


@pytest.mark.parametrize("fault", list(CONFIGS))
def test_unusable_nornir_configs(fault: str, tmp_path: Path, figures: Figures) -> None:
    """Nornir's own messages for these were riddles (``'workerz'``, ``'list' object has
    no attribute 'items'``, ``No such file or directory: 'hosts.yaml'``) or a traceback."""
    make, words = CONFIGS[fault]
    result = run("check", "--config", make(tmp_path / "case"))
    assert one_line_exit_2(figures, fault, result, *words), result.stderr
