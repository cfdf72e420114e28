"""Back to a playbook that a lost run left running on the bastion.

kill -9 of the operator's process, or a laptop losing its network, does not stop the
playbook: it runs in the background on the bastion with its output in its log, on purpose
(real kubespray takes 15-40 minutes). Before, the next run only said "another kubespray
run holds the lock ... log: <path>", naming a log that did not exist (its own), and had no
way back. Now the next run finds it: the playbook lock is still held, and the run file
written by ``playbook.playbook_script`` names its pid, log, exit-status file and cluster.
The run follows the log until that pid ends, reads the exit status the script writes
then, and goes on as if it had started the playbook itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubebastion.kubespray.playbook import PlaybookPaths
from kubebastion.ssh.remote import parse_key_values, quote

#: The attach script's exit code when the playbook ended without writing its status
#: (its script was killed too): the recap decides then.
NO_STATUS = 253
_STATUS_WAIT = 50  # tenths of a second


@dataclass(frozen=True)
class RunningPlaybook:
    """A playbook running on the bastion, as its run file describes it (empty fields:
    the lock is held by something that wrote no run file)."""

    pid: int
    log: str
    exit_file: str
    cluster: str
    started: str

    @property
    def known(self) -> bool:
        return self.pid > 0 and bool(self.log)


def running_command(paths: PlaybookPaths) -> str:
    """``running=no``, or ``running=yes`` and the run file: the playbook lock is held
    while a playbook runs, and by nothing else."""
    lock = quote(paths.lock_file)
    return (f"if [ -e {lock} ] && ! flock -n {lock} true; then echo running=yes; "
            f"cat {quote(paths.run_file)} 2>/dev/null || true; else echo running=no; fi")


def parse_running(stdout: str) -> RunningPlaybook | None:
    values = parse_key_values(stdout)
    if values.get("running") != "yes":
        return None
    pid = values.get("pid", "")
    return RunningPlaybook(pid=int(pid) if pid.isdigit() else 0, log=values.get("log", ""),
                           exit_file=values.get("exit", ""),
                           cluster=values.get("cluster", ""),
                           started=values.get("started", ""))


def attach_script(running: RunningPlaybook) -> str:
    """Follow the log from its current end until the playbook's process is gone, then
    exit with the status its script wrote (it writes it right after the process ends)."""
    status = quote(running.exit_file)
    return "\n".join([
        f"tail -n 0 -s 0.2 --pid={running.pid} -f {quote(running.log)}",
        "i=0",
        f"while [ ! -s {status} ] && [ $i -lt {_STATUS_WAIT} ]; do sleep 0.1; i=$((i+1)); done",
        f'if [ -s {status} ]; then exit "$(cat {status})"; fi',
        f"exit {NO_STATUS}",
    ])


def describe_other(running: RunningPlaybook, lock_file: str, cluster: str) -> str:
    """Why this run cannot go on: a playbook that is not this cluster's holds the lock."""
    if not running.known:
        return (f"another kubespray run holds {lock_file} on the bastion (it wrote no run "
                "details: an older kubebastion, or a manual flock); wait for it to end")
    return (f"a playbook for cluster {running.cluster!r}, not {cluster!r}, runs on the "
            f"bastion (pid {running.pid}, since {running.started}, log: {running.log}); "
            "wait for it to end")


_HOLDER_LOG = re.compile(r"another kubespray run holds \S+ \(log: (?P<log>[^)]*)\)")


def holder_log(output: str) -> str:
    """The log named by the playbook script when it found the lock held ("" if none)."""
    match = _HOLDER_LOG.search(output)
    return match.group("log").strip() if match else ""
