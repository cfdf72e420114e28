"""Host key fingerprints and known_hosts parsing (compared with ssh-keygen's)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko

from kubebastion.ssh.hostkeys import fingerprint, load_known_hosts


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)],
                   check=True)
    expected = subprocess.run(["ssh-keygen", "-lf", str(key_file)], capture_output=True,
                              text=True, check=True).stdout.split()[1]
    assert fingerprint(paramiko.PKey.from_path(key_file)) == expected


def test_known_hosts_is_parsed_once(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    assert load_known_hosts(known) is load_known_hosts(known)
