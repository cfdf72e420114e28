"""admin.conf for the login user on the control plane: what the state script's answer
means (up to date, or the write to make), and the write it makes."""

from __future__ import annotations

import dataclasses
import hashlib

from kubebastion.admin_conf import TargetState
from kubebastion.ssh.remote import parse_key_values


def test_target_state_decides_and_the_write_keeps_a_different_config() -> None:
    values = parse_key_values("path=/h/.kube/config\ngroup=ops\nwant=aa\nhave=bb\n"
                              "fstate=600 kb ops\ndstate=700 kb ops\n")
    target = TargetState.parse(values)
    assert not target.up_to_date("kb")  # another file
    assert dataclasses.replace(target, have="aa").up_to_date("kb")
    assert not dataclasses.replace(target, have="aa", file_state="644 kb ops").up_to_date("kb")
    assert not dataclasses.replace(target, have="aa", folder_state="755 kb ops"
                                   ).up_to_date("kb")
    write = target.write("kb", b"admin")
    assert (write.path, write.mode, write.owner, write.group, write.folder_mode) == (
        "/h/.kube/config", 0o600, "kb", "ops", 0o700)
    assert write.backup  # "bb" is not admin.conf: kept
    same = dataclasses.replace(target, have=hashlib.sha256(b"admin").hexdigest())
    assert not same.write("kb", b"admin").backup  # only the mode or owner was wrong
    assert not dataclasses.replace(target, have="none").write("kb", b"admin").backup
