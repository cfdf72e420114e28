"""The command line: one collection for ``invoke`` and the ``kubebastion`` command, the
console command's own menu and help, and how a task finds its Nornir config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from invoke.config import Config
from invoke.context import Context

import tasks
from kubebastion.cli import collection, program
from kubebastion.cli.ending import command_name

KUBEBASTION = str(Path(sys.executable).with_name("kubebastion"))
STEPS = {"deploy", "check", "nat", "kubespray", "admin-conf", "fetch-kubeconfig", "tunnel",
         "remove-node", "upgrade", "reset"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBEBASTION, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_the_package_collection_holds_every_step_and_the_checkout_adds_only_the_lab() -> None:
    assert set(collection().task_names) == STEPS
    assert set(tasks.namespace.task_names) == STEPS | {"lab.up", "lab.down", "lab.status"}
    for name in STEPS:  # the same task objects, not copies that could drift apart
        assert tasks.namespace[name] is collection()[name]


def test_each_collection_is_new_so_a_users_additions_stay_theirs() -> None:
    mine = collection()
    mine.add_collection(collection("kubebastion"), "other")
    assert "other.deploy" not in collection().task_names


@pytest.mark.parametrize(("command", "expected"), [("invoke", "invoke"),
                                                   ("kubebastion", "kubebastion")])
def test_messages_name_the_command_the_collection_was_made_for(command: str,
                                                               expected: str) -> None:
    config = Config(defaults=collection(command).configuration())
    assert command_name(Context(config)) == expected


def test_a_context_without_our_section_says_invoke() -> None:
    assert command_name(Context(Config())) == "invoke"


def test_the_console_command_lists_the_steps_and_not_the_lab() -> None:
    listed = run("--list", "--list-format", "json")
    assert listed.returncode == 0, listed.stderr
    menu = json.loads(listed.stdout)
    assert {t["name"] for t in menu["tasks"]} == STEPS
    assert menu["collections"] == []


def test_the_console_command_help_names_itself(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = in_process(capsys, "--help")
    assert code == 0
    assert out.startswith("Usage: kubebastion "), out
    assert "deploy" in out
    code, out, _ = in_process(capsys, "--version")
    assert out.startswith("kubebastion 0."), out


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The console command's Program run here (quicker than a process per case)."""
    code = 0
    try:
        program().run(["kubebastion", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("flag", ["--dry", "-f", "--echo", "--pty", "--prompt-for-sudo-password"])
def test_invokes_flags_for_shell_commands_are_not_taken(
        flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``kubebastion --dry deploy`` would have been a real deploy (invoke's ``--dry``
    echoes local shell commands; a dry run is ``deploy --dry-run``)."""
    monkeypatch.chdir(tmp_path)  # no config here: had the task run, it would say so
    code, _, err = in_process(capsys, flag, "deploy")
    assert code == 2  # a usage error (README), where invoke itself says 1
    assert err.strip() == f"No idea what '{flag}' is!"
    shown = in_process(capsys, "--help")[1].split()
    assert not [word for word in shown if word.rstrip(",").split("=")[0] == flag]


@pytest.mark.parametrize("argv", [["deploy", "--bogus"], ["nosuchtask"], ["deploy", "--steps"],
                                  ["check", "--limit", "k8s-w0"]])
def test_usage_errors_exit_2_with_invokes_one_line(
        argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no config here: had a task run, it would say so
    code, out, err = in_process(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and ("No idea what" in lines[0]
                                or "needed value and was not given one" in lines[0]), err
    assert "Nornir config" not in err and "Traceback" not in err


def test_task_help_names_the_console_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = in_process(capsys, "deploy", "--help")
    assert code == 0
    assert out.startswith("Usage: kubebastion [--core-opts] deploy [--options]"), out
    assert "--dry-run" in out and "--config=STRING" in out


def test_the_nornir_config_is_found_in_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nornir_config.yaml").write_text("hosts: [a]\n")  # an inventory by mistake
    code, _, err = in_process(capsys, "check")
    assert code == 2, err
    assert "nornir_config.yaml is not a Nornir config" in err, err
    assert "Traceback" not in err


def test_no_config_here_exits_2_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = in_process(capsys, "nat", "--dry-run")
    assert code == 2
    assert err.strip().splitlines() == [
        "error: Nornir config nornir_config.yaml does not exist (use --config PATH)"]


def test_bad_usage_exits_2_before_any_file_is_read(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = in_process(capsys, "kubespray", "--preflight", "--tags", "facts")
    assert code == 2
    assert "--preflight runs kubespray's own" in err


def test_python_dash_m_is_the_same_command() -> None:
    shown = subprocess.run([sys.executable, "-m", "kubebastion", "--list"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0 and "fetch-kubeconfig" in shown.stdout, shown.stderr


def test_the_readme_example_of_a_users_own_tasks_py(tmp_path: Path) -> None:
    """README's example, as written there, gives invoke kubebastion's tasks and the user's."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("in your own `tasks.py`:\n\n```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "tasks.py").write_text(example)
    invoke = str(Path(sys.executable).with_name("invoke"))
    listed = subprocess.run([invoke, "--list", "--list-format", "json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert {t["name"] for t in json.loads(listed.stdout)["tasks"]} == STEPS | {"nodes"}
