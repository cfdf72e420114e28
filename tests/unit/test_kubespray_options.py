"""The user's --tags/--skip-tags/--limit/-e for kubespray, the tarball's pinned sha256, and
the preflight's per-host rows (from captured real kubespray v2.31.0 output)."""

from __future__ import annotations

import hashlib
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
    PlaybookOutcome,
    describe_failure,
    parse_playbook_output,
    playbook_environment,
    playbook_paths,
    playbook_script,
)
from kubebastion.kubespray.recap import recap_rows
from kubebastion.kubespray.settings import TarballSource, settings_from
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

def tarball(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "kubespray-2.31.0.tar.gz"
    path.write_bytes(b"not really a tarball, but bytes to hash")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_pinned_sha256_that_matches_is_kept(tmp_path: Path) -> None:
    path, digest = tarball(tmp_path)
    settings = settings_from({"source": str(path), "source_sha256": digest.upper()}, tmp_path)
    assert settings.source == TarballSource(path, digest)
    assert settings_from({}, tmp_path, source=str(path),
                         source_sha256=f"sha256:{digest}").source == TarballSource(path, digest)


def test_a_wrong_sha256_stops_before_any_upload_and_names_both(tmp_path: Path) -> None:
    path, digest = tarball(tmp_path)
    wrong = "0" * 64
    with pytest.raises(ConfigError) as caught:
        settings_from({"source": str(path), "source_sha256": wrong}, tmp_path)
    message = str(caught.value)
    assert digest in message and wrong in message and "nothing was uploaded" in message


@pytest.mark.parametrize(("source", "sha", "message"), [
    (None, "abc", "is not a sha256"),
    ("dir", "0" * 64, "applies to a tarball source"),
    ("git", "0" * 64, "applies to a tarball source"),
], ids=["malformed", "directory", "git"])
def test_a_sha256_is_refused_where_it_cannot_apply(tmp_path: Path, source: str | None,
                                                   sha: str, message: str) -> None:
    path, _ = tarball(tmp_path)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "cluster.yml").write_text("")
    (checkout / "requirements.txt").write_text("")
    chosen = {None: str(path), "dir": str(checkout),
              "git": "https://example.invalid/kubespray.git"}[source]
    with pytest.raises(ConfigError, match=message):
        settings_from({"source": chosen, "source_sha256": sha}, tmp_path)


def test_settings_carry_extra_vars_and_preflight(tmp_path: Path) -> None:
    settings = settings_from({"extra_vars": ["a=1"], "preflight": False}, tmp_path,
                             extra_vars=["a=2"], limit="k8s-m0")
    assert settings.playbook.argv() == ["--limit", "k8s-m0", "-e", "a=1", "-e", "a=2"]
    assert settings.preflight is False
    assert settings_from({}, tmp_path).preflight is True
    assert settings_from({"preflight": False}, tmp_path, preflight=True).preflight is True
    with pytest.raises(ConfigError, match="preflight must be true or false"):
        settings_from({"preflight": "no"}, tmp_path)
    with pytest.raises(ConfigError, match="extra_vars must be a list"):
        settings_from({"extra_vars": "a=1"}, tmp_path)


# --- per-host rows from real kubespray v2.31.0 output (captured on lab nodes) ---------------

def outcome(case: str, exit_code: int) -> PlaybookOutcome:
    text = (CASES / f"real_v2.31.0_{case}.txt").read_text()
    return PlaybookOutcome(exit_code, parse_playbook_output(text), "/r.log", "/l.log", 30.0)


def test_real_preflight_passes_on_every_node_and_changes_nothing() -> None:
    rows = recap_rows(outcome("preflight_ok", 0), ["k8s-m0", "k8s-w0", "k8s-w1", "absent"],
                      "preflight")
    assert [(r.host, r.status) for r in rows] == [
        ("k8s-m0", "ok"), ("k8s-w0", "ok"), ("k8s-w1", "ok")]
    assert rows[0].detail == "ok=73 changed=0 skipped=62"
    assert rows[0].data["recap"]["failed"] == 0 and rows[0].data["part"] == "preflight"


def test_real_ip_assertion_names_the_host_the_task_and_its_message() -> None:
    ran = outcome("ip_mismatch", 2)
    rows = {r.host: r for r in recap_rows(ran, ["k8s-m0", "k8s-w0", "k8s-w1"], "preflight")}
    assert rows["k8s-m0"].status == rows["k8s-w0"].status == "ok"
    failed = rows["k8s-w1"]
    task = "kubernetes/preinstall : Stop if ip var does not match local ips"
    assert failed.status == "failed" and failed.data["task"] == task
    assert failed.data["message"].endswith("do not contain '198.18.1.250'")
    assert failed.detail.startswith(f"failed at task [{task}]: IPv4: '['198.18.1.101']'")
    text = describe_failure(ran.summary, 2, "/r.log", 60)
    assert f"k8s-w1 failed at task [{task}]" in text


def test_only_a_run_of_everything_can_be_recorded_and_only_the_preflight_keeps_a_record(
        ) -> None:
    assert PlaybookOptions().plays_everything
    assert PlaybookOptions(limit="k8s-m0", extra_vars=("a=1",)).plays_everything
    assert not playbook_options(tags="network").plays_everything
    assert not playbook_options(skip_tags="download").plays_everything
    assert PlaybookOptions().for_preflight().is_preflight
    assert not playbook_options(tags="facts").is_preflight


def test_extra_vars_are_part_of_the_recorded_state() -> None:
    from kubebastion.kubespray import applied
    from kubebastion.kubespray.inventory import GROUP_VARS_FILE, HOSTS_FILE

    def state(*extra: str) -> dict[str, str]:
        return applied.desired_state(source_identity="s", requirements_sha256="r",
                                     inventory={HOSTS_FILE: "h", GROUP_VARS_FILE: "g"},
                                     kubespray_vars={}, api=":6443", checkout="/k",
                                     extra_vars=extra)
    assert applied.reasons_to_run(state("a=1"), state("a=1")) == []
    assert applied.reasons_to_run(state("a=1"), state("a=2")) == [
        "the extra vars (-e, the extra_vars setting) changed since the last successful run"]
