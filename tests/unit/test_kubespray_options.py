"""The user's --tags/--skip-tags/--limit/-e for kubespray: checked before any SSH, passed to
ansible as literal arguments, part of what decides a rerun."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kubebastion.errors import ConfigError
from kubebastion.kubespray.options import (
    PREFLIGHT_TAGS,
    PlaybookOptions,
    extra_vars_mapping,
    playbook_options,
)
from kubebastion.kubespray.playbook import (
    playbook_environment,
    playbook_paths,
    playbook_script,
)
from kubebastion.ssh.shell import LocalShell
from kubebastion.ssh.stream import stream_command

CASES = Path(__file__).parent / "cases" / "kubespray"


def test_options_become_argv_items_in_ansible_order() -> None:
    options = playbook_options(tags="facts, asserts", skip_tags="download", limit="k8s-w*:!k8s-w1",
                               extra_vars=["kube_version=1.35.4", '{"dns_mode": "coredns"}'])
    assert options.argv() == ["--tags", "facts,asserts", "--skip-tags", "download",
                              "--limit", "k8s-w*:!k8s-w1", "-e", "kube_version=1.35.4",
                              "-e", '{"dns_mode": "coredns"}']
    assert PlaybookOptions().argv() == []


def test_the_preflight_keeps_limit_and_extra_vars_but_uses_its_own_tags() -> None:
    options = playbook_options(tags="network", skip_tags="asserts", limit="k8s-m0",
                               extra_vars=["a=1"])
    assert options.for_preflight() == PlaybookOptions(PREFLIGHT_TAGS, (), "k8s-m0", ("a=1",))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tags": "facts;reboot"}, "not a tag name"),
    ({"skip_tags": "$(id)"}, "not a tag name"),
    ({"limit": "k8s-m0 -e x=1"}, "not an ansible host pattern"),
    ({"limit": "a;b"}, "not an ansible host pattern"),
    ({"extra_vars": ["@vars.yml"]}, "not supported"),
    ({"extra_vars": ["novalue"]}, "must be key=value"),
    ({"extra_vars": ['{"unclosed": ']}, "not valid JSON/YAML"),
    ({"extra_vars": ["[1, 2]"]}, "must be a mapping"),
    ({"extra_vars": ["9lives=1"]}, "not a variable name"),
    ({"extra_vars": [" "]}, "empty"),
    ({"extra_vars": ["ansible_host_key_checking=false"]}, "would disable SSH host key"),
    ({"extra_vars": ['{"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"}']},
     "extra vars (-e) would disable"),
], ids=["tag-semicolon", "skip-tag-subst", "limit-space", "limit-semicolon", "vars-file",
        "no-value", "bad-json", "json-list", "bad-name", "empty", "host-key-off",
        "ssh-args-off"])
def test_bad_options_are_refused_before_any_ssh(kwargs: dict[str, object],
                                                message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        playbook_options(**kwargs)  # type: ignore[arg-type]


def test_extra_vars_are_read_as_ansible_reads_them() -> None:
    assert extra_vars_mapping("a=1 b='two words'") == {"a": "1", "b": "two words"}
    assert extra_vars_mapping('{"a": {"b": true}}') == {"a": {"b": True}}


FAKE_PLAYBOOK = """#!/bin/sh
printf 'arg:%s\\n' "$@"
"""


def test_every_option_reaches_ansible_as_one_literal_argument(tmp_path: Path) -> None:
    """Run for real through /bin/sh: nothing a user types is read by the shell."""
    fake = tmp_path / "venv" / "bin" / "ansible-playbook"
    fake.parent.mkdir(parents=True)
    fake.write_text(FAKE_PLAYBOOK)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "kubespray").mkdir()
    canary = tmp_path / "pwned"
    hostile = f"x='$(touch {canary}) `touch {canary}`; touch {canary}'"
    options = playbook_options(tags="facts", limit="k8s-w[0:1]", extra_vars=[hostile])
    paths = playbook_paths(str(tmp_path / "kubespray"), str(tmp_path / "venv"),
                           str(tmp_path / "logs"), "20260101T000000Z")
    env = playbook_environment(known_hosts="/kh", private_key="/k", password_file=None)
    script = playbook_script(paths, "lab", env, 30, options.argv())
    result = stream_command(LocalShell("bastion", 60), script, lambda _: None, 60)
    assert result.exit_code == 0, result.output
    assert [line[4:] for line in result.output.splitlines() if line.startswith("arg:")] == [
        "-i", "inventory/lab/hosts.yaml", "cluster.yml", "-b", "--tags", "facts",
        "--limit", "k8s-w[0:1]", "-e", hostile]
    assert not canary.exists()


# --- the tarball's sha256 -----------------------------------------------------------------


# --- per-host rows from real kubespray v2.31.0 output (captured on lab nodes) ---------------

def test_only_a_run_of_everything_can_be_recorded_and_only_the_preflight_keeps_a_record(
        ) -> None:
    assert PlaybookOptions().plays_everything
    assert PlaybookOptions(limit="k8s-m0", extra_vars=("a=1",)).plays_everything
    assert not playbook_options(tags="network").plays_everything
    assert not playbook_options(skip_tags="download").plays_everything
    assert PlaybookOptions().for_preflight().is_preflight
    assert not playbook_options(tags="facts").is_preflight
