"""The day-two command lines, as kubespray v2.31.0's docs write them."""

from __future__ import annotations

import pytest

from kubebastion.day2 import playbooks
from kubebastion.kubespray.options import PlaybookOptions
from kubebastion.kubespray.playbook import display_command

COMMANDS = [
    ("facts", playbooks.facts_refresh(), "playbooks/facts.yml -b"),
    ("scale", playbooks.scale(["k8s-w2", "k8s-w3"]), "scale.yml -b --limit k8s-w2,k8s-w3"),
    ("remove", playbooks.remove_node("k8s-w1"),
     "remove-node.yml -b -e node=k8s-w1 -e skip_confirmation=yes"),
    ("remove offline", playbooks.remove_node("k8s-w1", offline=True),
     "remove-node.yml -b -e node=k8s-w1 -e skip_confirmation=yes -e reset_nodes=false "
     "-e allow_ungraceful_removal=true"),
    ("upgrade", playbooks.upgrade("1.35.4", 2),
     "upgrade-cluster.yml -b -e kube_version=1.35.4 -e serial=2"),
    ("reset", playbooks.reset(), "reset.yml -b -e reset_confirmation=yes"),
]


@pytest.mark.parametrize(("options", "tail"), [c[1:] for c in COMMANDS],
                         ids=[c[0] for c in COMMANDS])
def test_day_two_command_lines(options: PlaybookOptions, tail: str) -> None:
    shown = display_command("demo", "/v", "/k", options.argv(), options.playbook)
    assert shown == f"cd /k && /v/bin/ansible-playbook -i inventory/demo/hosts.yaml {tail}"


KEEPS_RECORD = [
    ("cluster.yml", PlaybookOptions(), False),
    ("preflight", PlaybookOptions().for_preflight(), True),
    ("facts", playbooks.facts_refresh(), True),
    ("scale of new workers", playbooks.scale(["k8s-w2"]), True),
    ("scale without a limit", PlaybookOptions(playbook="scale.yml"), False),
    ("remove-node", playbooks.remove_node("k8s-w1"), False),
    ("upgrade", playbooks.upgrade("1.35.4"), False),
    ("reset", playbooks.reset(), False),
]


@pytest.mark.parametrize(("options", "keeps"), [c[1:] for c in KEEPS_RECORD],
                         ids=[c[0] for c in KEEPS_RECORD])
def test_which_playbooks_keep_the_applied_record(options: PlaybookOptions, keeps: bool) -> None:
    assert options.keeps_record is keeps
    assert options.plays_everything is (options.playbook == "cluster.yml"
                                        and not options.tags)
