"""The kubespray tasks' results: the one line a report row shows, the data programs get."""

from __future__ import annotations

from kubebastion.kubespray.attach import RunningPlaybook
from kubebastion.kubespray.playbook import PlaybookOutcome, parse_playbook_output
from kubebastion.kubespray.results import PythonCheck, Running, VenvState


def test_a_python_check_says_why_it_failed_else_what_it_found() -> None:
    assert PythonCheck("python3", "3.11.2").summary == "python3: Python 3.11.2"
    failed = PythonCheck("python3", "3.9.2", ("Python 3.9.2 is too old for kubespray",))
    assert failed.summary == "Python 3.9.2 is too old for kubespray"
    assert failed.as_dict() == {"python": "3.9.2", "interpreter": "python3",
                                "summary": "Python 3.9.2 is too old for kubespray"}


def test_a_venv_is_named_by_its_requirements_digest() -> None:
    data = VenvState("ab" * 32, "built").as_dict()
    assert data["requirements"] == "abababababab" and data["requirements_sha256"] == "ab" * 32


def test_running_says_which_playbook() -> None:
    assert Running(None).summary == "no playbook running"
    found = RunningPlaybook(42, "/home/u/kubebastion-logs/x.log", "/x.exit", "lab", "now")
    assert Running(found).summary == "a playbook runs (pid 42, log /home/u/kubebastion-logs/x.log)"


def test_a_failed_playbook_summary_is_its_failure_else_the_recap_line() -> None:
    ok = PlaybookOutcome(0, parse_playbook_output(""), "/r.log", "/l.log", 3.0)
    assert ok.summary == ok.recap_line() == "0 hosts, 0 changes, 3 s; log: /r.log (bastion), /l.log"
    failed = PlaybookOutcome(2, parse_playbook_output(""), "/r.log", "/l.log", 3.0,
                             failure="k8s-w1 failed at task [x]")
    assert failed.summary == "k8s-w1 failed at task [x]"
