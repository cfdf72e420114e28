"""``ansible-playbook cluster.yml`` on the bastion: the command, and what its output says.

The command is a small POSIX script: it takes a lock (two playbooks on one cluster at once
would fight), starts the playbook in the background under ``timeout`` with all output in
the log file, and follows that file with ``tail --pid`` so we see it live. The process
id is written to a file, so an interrupted run can be stopped by id.

Host key checking is forced on through the environment, which outranks kubespray's
``ansible.cfg`` (``host_key_checking=False`` and ``UserKnownHostsFile=/dev/null``). The
sudo password, when there is one, reaches ansible only as ``ANSIBLE_BECOME_PASSWORD_FILE``
(a 0600 file that the script removes), never on a command line.

The parsers read ansible's default callback with ``callback_result_format=json`` (which
the environment also forces), one result per line.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from kubebastion.kubespray.forks import Forks
from kubebastion.kubespray.options import CLUSTER_PLAYBOOK
from kubebastion.ssh.remote import quote

#: ``timeout`` exits 124 when it stopped the command, 137 when it had to SIGKILL it.
TIMED_OUT_CODES = (124, 137)
LOCKED_CODE = 75
_KILL_GRACE = 30

_BANNER = re.compile(r"^(PLAY|TASK|RUNNING HANDLER) \[(?P<name>.*)\] \**\s*$")
_RECAP_START = re.compile(r"^PLAY RECAP \**\s*$")
_RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")
_RESULT = re.compile(
    r"^(?P<kind>fatal|failed): \[(?P<host>[^\]]+)\]"
    r"(?:: (?P<what>FAILED|UNREACHABLE)!)?"
    r"(?: \(item=(?P<item>.*?)\))? => (?P<body>.*)$")
_ERROR = re.compile(r"^(?:ERROR! |\[ERROR\]: )(?P<message>.*)$")
_MESSAGE_LIMIT = 600


@dataclass(frozen=True)
class ProgressEvent:
    """A line worth showing while the playbook runs."""

    kind: str  # play, task, handler, failure, recap, error
    text: str


def progress_event(line: str) -> ProgressEvent | None:
    """The play/task banners, failures and errors among ansible's output lines."""
    banner = _BANNER.match(line)
    if banner:
        kind = {"PLAY": "play", "TASK": "task"}.get(line.split(" ", 1)[0], "handler")
        return ProgressEvent(kind, banner.group("name"))
    if _RECAP_START.match(line):
        return ProgressEvent("recap", "PLAY RECAP")
    result = _RESULT.match(line)
    if result:
        what = result.group("what") or "FAILED"
        return ProgressEvent("failure", f"{result.group('host')}: {what}")
    error = _ERROR.match(line)
    if error:
        return ProgressEvent("error", error.group("message"))
    return None


@dataclass(frozen=True)
class HostRecap:
    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0

    @property
    def succeeded(self) -> bool:
        return self.unreachable == 0 and self.failed == 0


@dataclass(frozen=True)
class TaskFailure:
    host: str
    play: str
    task: str
    message: str
    unreachable: bool = False
    item: str | None = None


@dataclass
class PlaybookSummary:
    recap: dict[str, HostRecap] = field(default_factory=dict)
    failures: list[TaskFailure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def failed_hosts(self) -> list[str]:
        if self.recap:
            return [h for h, r in self.recap.items() if not r.succeeded]
        return sorted({f.host for f in self.failures})

    def decisive_failures(self) -> list[TaskFailure]:
        """The failure that stopped each failed host: its last one (earlier ones may have
        been rescued)."""
        last: dict[str, TaskFailure] = {}
        for failure in self.failures:
            last[failure.host] = failure
        return [last[h] for h in self.failed_hosts if h in last]

    def as_dict(self) -> dict[str, Any]:
        return {"recap": {h: asdict(r) for h, r in self.recap.items()},
                "failures": [asdict(f) for f in self.decisive_failures()],
                "errors": list(self.errors), "failed_hosts": self.failed_hosts}


def parse_recap_line(line: str) -> tuple[str, HostRecap] | None:
    match = _RECAP_LINE.match(line.strip())
    if not match:
        return None
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group("counts"))}
    known = {k: v for k, v in counts.items() if k in HostRecap.__dataclass_fields__}
    return match.group("host"), HostRecap(**known)


#: What ansible says about a loop as a whole; the reason is in its items.
_LOOP_SUMMARIES = ("All items completed", "One or more items failed")


def _message_of(data: Mapping[str, Any]) -> str | None:
    message = data.get("msg")
    results = data.get("results")
    if (message in _LOOP_SUMMARIES or message is None) and isinstance(results, list):
        for item in results:
            if isinstance(item, Mapping) and (item.get("failed") or item.get("unreachable")):
                inner = _message_of(item)
                if inner:
                    return inner
    for key in ("msg", "stderr", "stdout", "reason"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def failure_message(body: str) -> str:
    """The useful part of a result: ``msg`` (for a loop, its first failed item's), else the
    command's stderr or stdout."""
    try:
        data = json.loads(body)
    except ValueError:
        return _clip(body)
    message = _message_of(data) if isinstance(data, Mapping) else None
    return _clip(condense_ssh_error(message or body))


_SENT_KEY = re.compile(r"(?P<type>\S+) key sent by the remote host is\s+"
                       r"(?P<fp>(?:SHA256|MD5):[A-Za-z0-9+/=:]+)")


def condense_ssh_error(message: str) -> str:
    """OpenSSH's 20-line "REMOTE HOST IDENTIFICATION HAS CHANGED" banner, in one line that
    keeps what matters: host key verification failed, and the key the host sent."""
    if ("Host key verification failed" not in message
            and "REMOTE HOST IDENTIFICATION HAS CHANGED" not in message):
        return message
    sent = _SENT_KEY.search(message)
    detail = (f": the host sent {sent.group('type')} key {sent.group('fp')}, which is not the "
              "one in the bastion's known_hosts (copied from the operator's verified keys)"
              if sent else "")
    return f"Host key verification failed{detail}"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def parse_playbook_output(text: str) -> PlaybookSummary:
    """Recap, failures (with their play and task) and fatal errors of one run's output."""
    summary = PlaybookSummary()
    play = task = ""
    in_recap = False
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if in_recap:
            parsed = parse_recap_line(line)
            if parsed:
                summary.recap[parsed[0]] = parsed[1]
                continue
            if line.strip():
                in_recap = False
            continue
        banner = _BANNER.match(line)
        if banner:
            if line.startswith("PLAY "):
                play, task = banner.group("name"), ""
            else:
                task = banner.group("name")
            continue
        if _RECAP_START.match(line):
            in_recap = True
            continue
        if line.strip() == "...ignoring" and summary.failures:
            summary.failures.pop()
            continue
        result = _RESULT.match(line)
        if result:
            host = result.group("host").split(" -> ")[0]
            summary.failures.append(TaskFailure(
                host=host, play=play, task=task,
                message=failure_message(result.group("body")),
                unreachable=result.group("what") == "UNREACHABLE",
                item=result.group("item")))
            continue
        error = _ERROR.match(line)
        if error:
            summary.errors.append(_clip(error.group("message")))
    return summary


def describe_failure(summary: PlaybookSummary, exit_code: int | None, log_paths: str,
                     timeout: float) -> str:
    """One paragraph for the operator: which hosts, which task, why, and where the log is."""
    if exit_code is None or exit_code in TIMED_OUT_CODES:
        head = f"the playbook timed out after {timeout:g} s (set kubespray timeout / --timeout)"
    elif exit_code == LOCKED_CODE:
        head = "another kubespray run started a playbook on the bastion just now; wait for it"
    else:
        head = f"ansible-playbook exited {exit_code}"
    parts = [head]
    for failure in summary.decisive_failures():
        what = "unreachable" if failure.unreachable else "failed"
        item = f" (item {failure.item})" if failure.item else ""
        parts.append(f"{failure.host} {what} at task [{failure.task}]{item}: {failure.message}")
    missing = [h for h in summary.failed_hosts
               if h not in {f.host for f in summary.decisive_failures()}]
    if missing:
        parts.append(f"failed hosts without a failure line: {', '.join(missing)}")
    parts += [f"error: {e}" for e in summary.errors[-3:]]
    if log_paths:
        parts.append(f"log: {log_paths}")
    return "; ".join(parts)


#: kubespray v2.31.0's ``ansible.cfg`` ``ssh_args`` less its host key option
#: (``UserKnownHostsFile=/dev/null``): one ssh master per node kept 30 minutes, so every
#: task of a run, and the runs that follow, reuse one connection per node.
KUBESPRAY_SSH_ARGS = "-o ControlMaster=auto -o ControlPersist=30m"


def ssh_args(known_hosts: str) -> str:
    """kubespray's own ssh options, with the host key options made strict. Its
    ``ConnectionAttempts=100`` stays 3 here: a node that does not answer is reported in
    seconds, not after 100 tries."""
    return (f"{KUBESPRAY_SSH_ARGS} -o ConnectionAttempts=3 "
            f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={known_hosts} "
            "-o BatchMode=yes")


def playbook_environment(*, known_hosts: str, private_key: str,
                         password_file: str | None, forks: int | None = None
                         ) -> dict[str, str]:
    """``forks``: ansible's forks (``kubespray.forks``); None leaves ansible's default."""
    env = {
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": ssh_args(known_hosts),
        "ANSIBLE_PRIVATE_KEY_FILE": private_key,
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_CALLBACK_FORMAT_PRETTY": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PYTHONUNBUFFERED": "1",
    }
    if forks is not None:
        env["ANSIBLE_FORKS"] = str(forks)
    if password_file is not None:
        env["ANSIBLE_BECOME_PASSWORD_FILE"] = password_file
    return env


@dataclass(frozen=True)
class PlaybookPaths:
    """Where the run keeps its files on the bastion."""

    checkout_dir: str
    venv_dir: str
    log: str
    pid_file: str
    lock_file: str
    run_file: str  # while it runs: pid, log, exit file, cluster (see ``attach``)
    exit_file: str  # its exit status, written when it ends (read by a re-attached run)


def run_stamp(now: float | None = None) -> str:
    """The name of one run's logs: the UTC second, and a random part, as two runs started
    in the same second (from two operators' machines) must never write to one log."""
    second = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    return f"{second}-{secrets.token_hex(3)}"


def playbook_paths(checkout_dir: str, venv_dir: str, log_dir: str, stamp: str) -> PlaybookPaths:
    logs = PurePosixPath(log_dir)
    return PlaybookPaths(
        checkout_dir=checkout_dir, venv_dir=venv_dir,
        log=str(logs / f"kubespray-{stamp}.log"),
        pid_file=str(logs / "kubespray.pid"),
        lock_file=str(logs / "kubespray.lock"),
        run_file=str(logs / "kubespray.run"),
        exit_file=str(logs / f"kubespray-{stamp}.exit"),
    )


def private_dir_command(path: str) -> str:
    """Make the logs folder ours alone (0700), new or not: it holds the logs and, while a
    run lasts, the sudo password file, whose name must not be listable."""
    return f"umask 077 && mkdir -p {quote(path)} && chmod 700 {quote(path)}"


def playbook_argv(venv_dir: str, cluster_name: str, extra: Sequence[str] = (),
                  playbook: str = CLUSTER_PLAYBOOK) -> list[str]:
    """``extra``: the user's --tags/--skip-tags/--limit/-e (``PlaybookOptions.argv``);
    ``playbook``: relative to the checkout (day two runs others than cluster.yml)."""
    return [str(PurePosixPath(venv_dir) / "bin/ansible-playbook"),
            "-i", f"inventory/{cluster_name}/hosts.yaml", playbook, "-b", *extra]


def playbook_script(paths: PlaybookPaths, cluster_name: str, env: Mapping[str, str],
                    timeout: float, extra: Sequence[str] = (),
                    playbook: str = CLUSTER_PLAYBOOK) -> str:
    """The playbook in the background, followed live. Its process keeps running when our
    connection dies (so does this script, waiting for it to write its exit status): the
    next run re-attaches to it (``attach``)."""
    log, pid, run_file = quote(paths.log), quote(paths.pid_file), quote(paths.run_file)
    argv = " ".join(quote(a) for a in playbook_argv(paths.venv_dir, cluster_name, extra,
                                                    playbook))
    exports = " ".join(f"{k}={quote(v)}" for k, v in env.items())
    cleanup = f"rm -f {pid} {run_file}"
    if "ANSIBLE_BECOME_PASSWORD_FILE" in env:
        cleanup += f" {quote(env['ANSIBLE_BECOME_PASSWORD_FILE'])}"
    return "\n".join([
        "set -u",
        "umask 077",
        private_dir_command(str(PurePosixPath(paths.log).parent)),
        f"exec 9>>{quote(paths.lock_file)}",
        f"if ! flock -n 9; then printf 'kubebastion: another kubespray run holds %s "
        f"(log: %s)\\n' {quote(paths.lock_file)} \"$(sed -n 's/^log=//p' {run_file} "
        f"2>/dev/null)\"; exit {LOCKED_CODE}; fi",
        f"trap {quote(cleanup)} EXIT",
        f"cd {quote(paths.checkout_dir)} || exit 1",
        f": > {log}",
        f"export {exports}",
        f"timeout -k {_KILL_GRACE} {int(timeout)} {argv} < /dev/null >> {log} 2>&1 &",
        "pid=$!",
        f"echo $pid > {pid}",
        f"printf 'pid=%s\\nlog=%s\\nexit=%s\\ncluster=%s\\nstarted=%s\\n' \"$pid\" {log} "
        f"{quote(paths.exit_file)} {quote(cluster_name)} \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" "
        f"> {run_file}",
        f"tail -n +1 -s 0.2 --pid=$pid -f {log}",
        "wait $pid",
        "rc=$?",
        f"printf '%s\\n' \"$rc\" > {quote(paths.exit_file)}",
        'exit "$rc"',
    ])


def display_command(cluster_name: str, venv_dir: str, checkout_dir: str,
                    extra: Sequence[str] = (), playbook: str = CLUSTER_PLAYBOOK) -> str:
    """The command as the operator would type it (for --dry-run and the report)."""
    argv = " ".join(quote(a) for a in playbook_argv(venv_dir, cluster_name, extra, playbook))
    return f"cd {quote(checkout_dir)} && {argv}"


def stop_command(pid_file: str) -> str:
    """Stop an interrupted run by the id it recorded (``timeout`` forwards the signal)."""
    p = quote(pid_file)
    return f"if [ -f {p} ]; then kill -TERM \"$(cat {p})\" 2>/dev/null || true; fi"


@dataclass(frozen=True)
class PlaybookOutcome:
    """One playbook run: how it ended, what the recap says, where its log is; for a failed
    run, ``failure`` says why (``describe_failure``)."""

    exit_code: int | None
    parsed: PlaybookSummary
    remote_log: str
    local_log: str
    seconds: float
    forks: Forks | None = None  # None: not known (a re-attached run)
    failure: str = ""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0

    @property
    def summary(self) -> str:
        """The task contract's one line: why it failed, else the recap line."""
        return self.failure or self.recap_line()

    def as_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "remote_log": self.remote_log,
                "local_log": self.local_log, "seconds": round(self.seconds, 3),
                "forks": self.forks.as_dict() if self.forks else None,
                **self.parsed.as_dict()}

    def recap_line(self) -> str:
        recap = self.parsed.recap
        changed = sum(r.changed for r in recap.values())
        forks = f"; forks {self.forks.value}: {self.forks.reason}" if self.forks else ""
        return (f"{len(recap)} hosts, {changed} changes, {self.seconds:.0f} s{forks}; "
                f"log: {self.remote_log} (bastion), {self.local_log}")
