"""Step 2, kubespray from the bastion, as Nornir tasks (each idempotent, each dry-runnable).

On the bastion, ``prepare_kubespray`` runs one sub-task per part: the checkout, the venv,
the inventory, the bastion's SSH key and the nodes' host keys. On every node,
``authorize_bastion_key`` lets that key in. ``run_kubespray_playbook`` then runs
``cluster.yml`` on the bastion. ``kubebastion.kubespray.deploy`` chains them and skips the
playbook when the cluster is already healthy. Each returns the task contract's result (see
``kubespray.results`` and docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

from nornir.core import Nornir
from nornir.core.task import Result, Task

from kubebastion.atomic_file import touch_private
from kubebastion.cluster import Cluster
from kubebastion.day2.nodes import Groups
from kubebastion.errors import RemoteCommandError, StepError
from kubebastion.interrupt import activity
from kubebastion.kubespray import applied, attach
from kubebastion.kubespray import playbook as pb
from kubebastion.kubespray import source as src
from kubebastion.kubespray import venv as venvs
from kubebastion.kubespray import wheelhouse as wh
from kubebastion.kubespray.bastion import BastionFacts, facts_command, parse_facts
from kubebastion.kubespray.forks import Forks, choose_forks
from kubebastion.kubespray.inventory import (
    inventory_dir,
    render_kubespray_inventory,
    text_diff,
)
from kubebastion.kubespray.layout import RemoteLayout
from kubebastion.kubespray.options import PlaybookOptions
from kubebastion.kubespray.python import python_problems
from kubebastion.kubespray.results import (
    Authorized,
    KeyState,
    Prepared,
    PythonCheck,
    RemoteFile,
    Running,
    SourceState,
    VenvState,
)
from kubebastion.kubespray.settings import (
    DEFAULT_PYTHON,
    GitSource,
    KubespraySettings,
    Source,
    TarballSource,
    expand_home,
)
from kubebastion.kubespray.sshtrust import (
    KEY_FILE,
    authorize_command,
    bastion_key_command,
    known_hosts_text,
    parse_bastion_key,
)
from kubebastion.secrets import redact, sudo_password
from kubebastion.ssh.connection import CONNECTION_NAME
from kubebastion.ssh.hostkeys import load_known_hosts
from kubebastion.ssh.remote import quote, read_file, run, upload, write_file
from kubebastion.ssh.settings import SSHSettings
from kubebastion.ssh.shell import HostShell, shell_for
from kubebastion.ssh.stream import StreamResult, stream_command

LineHandler = Callable[[str], None]
ProgressHandler = Callable[[pb.ProgressEvent], None]

SOURCE, VENV, INVENTORY, SSH_KEY, KNOWN_HOSTS, RUNNING = (
    "source", "venv", "inventory", "ssh key", "known_hosts", "running playbook")
_UPLOAD_TIMEOUT = 900.0
_PIP_TIMEOUT = 1800.0


def gather_bastion_facts(task: Task, python: str = DEFAULT_PYTHON) -> Result:
    """Home folder, Python (the venv's interpreter), machine, libc and git of the bastion
    user (read-only)."""
    facts = parse_facts(run(shell_for(task), facts_command(python), timeout=60).stdout)
    return Result(host=task.host, result=facts)


def _version_label(settings: KubespraySettings) -> str:
    """The kubespray version to check the Python against: the tag to clone, or the
    upload's VERSION file (else its name, as ``kubespray-2.31.0.tar.gz``)."""
    if isinstance(settings.source, GitSource):
        return settings.source.version
    return src.local_version_label(settings.source)


def check_bastion_python(task: Task, settings: KubespraySettings) -> Result:
    """Preflight: the bastion's chosen Python can build this kubespray's venv (read-only,
    so it runs before anything is cloned or uploaded)."""
    facts: BastionFacts = gather_bastion_facts(task, settings.python).result
    check = PythonCheck(settings.python, facts.python,
                        tuple(python_problems(facts, settings.python, _version_label(settings))))
    return Result(host=task.host, failed=bool(check.problems), result=check)


def ensure_kubespray_source(task: Task, settings: KubespraySettings,
                            facts: BastionFacts) -> Result:
    """The wanted kubespray in the checkout folder: cloned or uploaded, unless there."""
    shell = shell_for(task)
    checkout = RemoteLayout.of(settings, facts.home).checkout
    wanted = src.wanted_marker(settings.source)
    exists, current = src.parse_marker_output(run(shell, src.marker_command(checkout)).stdout)
    if current == wanted:
        return Result(host=task.host, result=SourceState(
            wanted.label, wanted.identity, f"{wanted.label} already there"))
    source = settings.source
    if isinstance(source, GitSource):
        if not facts.git:
            raise StepError("git is missing on the bastion: install it, or upload a local "
                            "checkout with --source DIR|TARBALL")
        action = f"git clone --depth 1 --branch {source.version} {source.url} {checkout}"
    else:
        action = f"upload {source.path} ({wanted.label}, {wanted.identity[:19]}) to {checkout}"
    if exists:
        was = current.label if current else "an unmarked folder"
        action += f", replacing {was} (kept as {checkout}.previous)"
    if task.is_dry_run():
        return Result(host=task.host, changed=True, diff=f"would {action}",
                      result=SourceState(wanted.label, "", "not there yet"))
    with activity(f"putting kubespray into {checkout}.kubebastion-new",
                  f"the next run puts it there again ({checkout} in use was not touched)"):
        _put_source(shell, source, checkout, wanted, task.host.name)
    return Result(host=task.host, changed=True,
                  result=SourceState(wanted.label, wanted.identity),
                  diff=action.replace("git clone", "cloned", 1).replace("upload ", "uploaded ", 1))


def _put_source(shell: HostShell, source: Source, checkout: str,
                wanted: src.SourceMarker, host: str) -> None:
    if isinstance(source, GitSource):
        result = run(shell, src.git_clone_command(source, checkout), check=False,
                     timeout=_UPLOAD_TIMEOUT)
        if not result.ok:
            raise RemoteCommandError(host, f"git clone {source.url}",
                                     result.exit_code, result.stderr)
    else:
        if isinstance(source, TarballSource):
            data, strip = source.path.read_bytes(), src.tarball_strip_components(source.path)
        else:
            data, strip = src.directory_tarball(source.path), 0
        archive = upload(shell, data)
        try:
            run(shell, src.unpack_command(archive, checkout, strip, wanted),
                timeout=_UPLOAD_TIMEOUT, display=f"unpack kubespray into {checkout}")
        finally:
            run(shell, f"rm -f {quote(archive)}", check=False)


def _wanted_requirements(shell: HostShell, settings: KubespraySettings,
                         layout: RemoteLayout) -> bytes | None:
    local = src.local_requirements(settings.source)
    if local is not None:
        return local
    return read_file(shell, venvs.requirements_path(layout.checkout))


def ensure_kubespray_venv(task: Task, settings: KubespraySettings,
                          facts: BastionFacts) -> Result:
    """A venv with kubespray's requirements, from PyPI or from an uploaded wheelhouse,
    built beside the one in use and swapped in when complete (see ``venv``)."""
    shell = shell_for(task)
    layout = RemoteLayout.of(settings, facts.home)
    state = venvs.parse_state(run(shell, venvs.state_command(layout.venv, layout.checkout)
                                  ).stdout, layout.venv)
    requirements = _wanted_requirements(shell, settings, layout)
    if requirements is None:
        if task.is_dry_run():
            return Result(host=task.host, changed=True, result=VenvState(""),
                          diff=f"would build {layout.venv} once the checkout is there")
        raise StepError(f"{layout.checkout}/requirements.txt is missing on the bastion")
    wanted = hashlib.sha256(requirements).hexdigest()
    cleaned = ""
    if state.leftovers:
        cleaned = ("removed " if not task.is_dry_run() else "would remove ") + (
            f"{len(state.leftovers)} half-built venv(s) of interrupted runs: "
            + ", ".join(state.leftovers))
        if not task.is_dry_run():
            run(shell, venvs.cleanup_command(state.leftovers), timeout=_UPLOAD_TIMEOUT)
    if state.built_from == wanted and state.has_ansible and state.made_by(facts.python):
        return Result(host=task.host, changed=bool(cleaned), diff=cleaned, result=VenvState(
            wanted, f"built from these requirements (sha256 {wanted[:12]})"))
    venvs.check_replaceable(state, layout.venv)
    origin = (f"the wheelhouse {settings.wheelhouse}" if settings.wheelhouse else "PyPI")
    build_id = f"{wanted[:12]}-{secrets.token_hex(3)}"
    build = venvs.build_dir(layout.venv, build_id)
    tool = "uv, else pip" if settings.uv else "pip (kubespray uv: false)"
    action = (f"build {build} with {tool}: kubespray's requirements "
              f"({venvs.requirements_path(layout.checkout)}) from {origin}, then "
              f"{layout.venv} -> {build}")
    notes = [cleaned] if cleaned else []
    if task.is_dry_run():
        return Result(host=task.host, changed=True, result=VenvState(""),
                      diff="; ".join([*notes, f"would {action}"]))
    find_links, uv, no_uv, sent = None, None, "kubespray uv: false in the inventory", ""
    if settings.wheelhouse is not None:
        find_links, uv, no_uv, sent = _wheelhouse_on_bastion(
            shell, settings.wheelhouse, requirements, facts, layout, settings.uv)
    elif settings.uv:
        uv = venvs.uv_from_pypi(layout.uv_tool, wh.UV_VERSION, settings.python)
    with activity(f"the venv build in {build}",
                  f"the next run removes {build} (half-built, never used) and builds the "
                  "venv again"):
        result = run(shell, venvs.build_command(layout.venv, layout.checkout, wanted,
                                                find_links, build_id, settings.python, uv),
                     check=False, timeout=_PIP_TIMEOUT)
    if not result.ok:
        raise StepError(f"{task.host.name}: building {build} failed (the venv in use was "
                        f"not touched): "
                        f"{venvs.explain_build_failure(result.stderr + result.stdout)}")
    installer = venvs.parse_installer(result.stdout, uv, no_uv)
    return Result(host=task.host, changed=True,
                  result=VenvState(wanted, installer=installer.as_dict(), wheelhouse=sent),
                  diff="; ".join([*notes, *([sent] if sent else []),
                                  f"built {layout.venv} from {origin} with {installer.name} "
                                  f"({installer.reason})"]))


def _wheelhouse_on_bastion(shell: HostShell, root: Path, requirements: bytes,
                           facts: BastionFacts, layout: RemoteLayout, want_uv: bool
                           ) -> tuple[str, venvs.UvPlan | None, str, str]:
    """The wheels (and uv) on the bastion, in a folder named by their digest: sent as one
    tar stream unless its marker already holds that digest (one round trip to know).
    Returns the folder, where uv is (None: not sent, for the reason given), that reason,
    and what was sent."""
    local = wh.wheelhouse_for(root, requirements, facts)
    binary = (wh.uv_for(root, facts) if want_uv
              else wh.UvBinary(None, "kubespray uv: false in the inventory"))
    digest = wh.wheelhouse_id(local, binary.path)
    remote = f"{layout.wheel_cache}/{digest}"
    if run(shell, wh.remote_present_command(remote, digest)).stdout.strip() == "present":
        sent = f"the wheelhouse was already on the bastion ({remote}): nothing sent"
    else:
        size = sum(path.stat().st_size for path in [*wh.wheel_files(local),
                                                    *filter(None, [binary.path])])
        with activity(f"sending the wheelhouse to {remote}.new",
                      f"the next run sends it again ({remote}.new is replaced)"):
            run(shell, wh.remote_unpack_command(remote, digest),
                data=wh.wheelhouse_stream(local, binary.path), timeout=_UPLOAD_TIMEOUT,
                display=f"unpack the wheelhouse into {remote}")
        sent = (f"sent the wheelhouse ({size / 1e6:.0f} MB{', uv included' if binary.path else ''}"
                f") to {remote} in one stream")
    uv = (venvs.UvPlan(binary=f"{remote}/{wh.UV_BINARY}", origin=binary.note)
          if binary.path is not None else None)
    return remote, uv, binary.note, sent


def ensure_kubespray_inventory(task: Task, settings: KubespraySettings, facts: BastionFacts,
                               cluster: Cluster) -> Result:
    """``inventory/<cluster>/`` in the checkout, rendered here from our inventory."""
    shell = shell_for(task)
    folder = inventory_dir(RemoteLayout.of(settings, facts.home).checkout, cluster.name)
    diffs = []
    for relative, text in render_kubespray_inventory(cluster).items():
        path = f"{folder}/{relative}"
        old = read_file(shell, path)
        diff = text_diff(None if old is None else old.decode(errors="replace"), text, path)
        if diff:
            diffs.append(diff)
            write_file(shell, path, text.encode(), mode=0o644, dry_run=task.is_dry_run())
    return Result(host=task.host, changed=bool(diffs), diff="".join(diffs),
                  result=RemoteFile(f"{folder}/hosts.yaml", f"{folder} up to date"))


def ensure_bastion_ssh_key(task: Task, facts: BastionFacts, comment: str) -> Result:
    """The bastion user's ed25519 key, created without a passphrase when absent."""
    key_path = expand_home(KEY_FILE, facts.home)
    output = run(shell_for(task), bastion_key_command(key_path, comment,
                                                      create=not task.is_dry_run()))
    key = parse_bastion_key(output.stdout)
    if key.state == "encrypted":
        raise StepError(f"{key_path} on the bastion needs a passphrase, which ansible "
                        "cannot type: give it none, or move it away so kubebastion makes one")
    if key.state == "missing":
        return Result(host=task.host, changed=True, result=KeyState(key),
                      diff=f"would create {key_path} (ssh-keygen -t ed25519 -N '')")
    return Result(host=task.host, changed=key.created,
                  result=KeyState(key, f"{key_path} exists"),
                  diff=f"created {key_path}" if key.created else "")


def operator_known_hosts_files(nornir: Nornir, cluster: Cluster) -> dict[str, Path]:
    """Node name -> the known_hosts file its own connection verifies against (read from
    the full inventory: a task's ``task.nornir`` only holds the filtered hosts)."""
    files = {}
    for node in cluster.nodes:
        extras = nornir.inventory.hosts[node.name].get_connection_parameters(
            CONNECTION_NAME).extras or {}
        files[node.name] = SSHSettings.from_extras(extras).known_hosts
    return files


def ensure_node_host_keys(task: Task, settings: KubespraySettings, facts: BastionFacts,
                          cluster: Cluster, operator_known_hosts: Mapping[str, Path]) -> Result:
    """The nodes' verified host keys in the bastion's known_hosts file for ansible."""
    shell = shell_for(task)
    path = RemoteLayout.of(settings, facts.home).known_hosts
    text = known_hosts_text(cluster.nodes,
                            lambda node: load_known_hosts(operator_known_hosts[node.name]))
    old = read_file(shell, path)
    diff = text_diff(None if old is None else old.decode(errors="replace"), text, path)
    if diff:
        write_file(shell, path, text.encode(), mode=0o644, dry_run=task.is_dry_run())
    return Result(host=task.host, changed=bool(diff), diff=diff,
                  result=RemoteFile(path, f"{path} up to date"))


def prepare_kubespray(task: Task, settings: KubespraySettings, cluster: Cluster,
                      operator_known_hosts: Mapping[str, Path]) -> Result:
    """Everything the playbook needs on the bastion, one sub-result per part.
    ``operator_known_hosts``: see ``operator_known_hosts_files``."""
    facts: BastionFacts = task.run(task=gather_bastion_facts, name="facts",
                                   python=settings.python).result
    problems = python_problems(facts, settings.python, _version_label(settings))
    if problems:  # before anything is cloned or uploaded
        raise StepError("; ".join(problems))
    running: Running = task.run(task=find_running_playbook, name=RUNNING, settings=settings,
                                facts=facts).result
    if running.running is not None:  # it uses the checkout and venv: change nothing under it
        return Result(host=task.host, result=Prepared(facts, running=running.running))
    source: SourceState = task.run(task=ensure_kubespray_source, name=SOURCE,
                                   settings=settings, facts=facts).result
    venv: VenvState = task.run(task=ensure_kubespray_venv, name=VENV, settings=settings,
                               facts=facts).result
    task.run(task=ensure_kubespray_inventory, name=INVENTORY, settings=settings, facts=facts,
             cluster=cluster)
    key: KeyState = task.run(task=ensure_bastion_ssh_key, name=SSH_KEY, facts=facts,
                             comment=f"kubebastion@{cluster.bastion.name}").result
    task.run(task=ensure_node_host_keys, name=KNOWN_HOSTS, settings=settings, facts=facts,
             cluster=cluster, operator_known_hosts=operator_known_hosts)
    layout = RemoteLayout.of(settings, facts.home)
    desired = applied.desired_state(
        source_identity=source.identity, requirements_sha256=venv.requirements_sha256,
        inventory=render_kubespray_inventory(cluster), kubespray_vars=cluster.kubespray_vars,
        api=f"{cluster.api_address or ''}:{cluster.api_port}", checkout=layout.checkout,
        extra_vars=settings.playbook.extra_vars, groups=Groups.of(cluster).as_text())
    recorded = applied.parse_record(read_file(
        shell_for(task), applied.record_path(layout.logs, cluster.name)))
    return Result(host=task.host, result=Prepared(facts, key.key, None, desired, recorded))


def authorize_bastion_key(task: Task, public_key: str | None) -> Result:
    """The bastion's key in this node's authorized_keys, appended once."""
    if public_key is None:  # dry run, and the bastion has no key yet
        return Result(host=task.host, changed=True, result=Authorized("not authorized yet"),
                      diff="would authorize the bastion's new key")
    output = run(shell_for(task), authorize_command(public_key, task.is_dry_run()))
    state = output.stdout.strip().splitlines()[-1] if output.stdout.strip() else ""
    if state not in ("present", "added", "absent"):
        raise StepError(f"{task.host.name}: unexpected authorized_keys output {state!r}")
    diff = {"added": "authorized the bastion's key",
            "absent": "would authorize the bastion's key"}.get(state, "")
    return Result(host=task.host, changed=state != "present", diff=diff,
                  result=Authorized() if state != "absent" else Authorized("not authorized yet"))


def run_kubespray_playbook(task: Task, settings: KubespraySettings, cluster: Cluster,
                           facts: BastionFacts, stamp: str,
                           on_line: LineHandler | None = None,
                           progress: ProgressHandler | None = None,
                           options: PlaybookOptions | None = None) -> Result:
    """``ansible-playbook -i inventory/<cluster>/hosts.yaml cluster.yml -b`` in the venv,
    with host key checking on, output live and in a log file on both sides.
    ``options``: what to add to the command line (default: the user's, from settings)."""
    shell = shell_for(task)
    layout = RemoteLayout.of(settings, facts.home)
    paths = pb.playbook_paths(layout.checkout, layout.venv, layout.logs, stamp)
    chosen = settings.playbook if options is None else options
    extra = chosen.argv()
    shown = pb.display_command(cluster.name, layout.venv, layout.checkout, extra,
                               chosen.playbook)
    forks = choose_forks(len(cluster.nodes), facts.cpus, facts.mem_available_mb,
                         settings.forks)
    if task.is_dry_run():
        return Result(host=task.host, changed=True,
                      diff=f"would run: {shown} (forks {forks.value}: {forks.reason})")
    # From here on the last successful run no longer describes the cluster (see applied),
    # unless this run only checks (kubespray's facts and assertions change nothing) or
    # adds workers the record does not hold yet.
    if not chosen.keeps_record:
        run(shell, applied.clear_command(applied.record_path(layout.logs, cluster.name)))
    local_log = settings.log_dir / f"kubespray-{stamp}.log"
    password = sudo_password()
    password_file = None
    if password is not None:
        run(shell, pb.private_dir_command(layout.logs))
        password_file = run(shell, f"umask 077 && mktemp {quote(layout.logs)}/.become.XXXXXXXX"
                            ).stdout.strip()
        shell.put(password.reveal().encode(), password_file)
    env = pb.playbook_environment(known_hosts=layout.known_hosts, private_key=layout.key,
                                  password_file=password_file, forks=forks.value)
    script = pb.playbook_script(paths, cluster.name, env, settings.timeout, extra,
                                chosen.playbook)
    started = time.monotonic()
    try:
        # Interrupted, the playbook is stopped too: ``timeout`` put it in a process group
        # of its own, which the stop command reaches by its recorded pid.
        with activity(f"the playbook ({paths.log})",
                      "the next run runs the playbook again (kubespray is idempotent)"):
            streamed = _stream_to_log(shell, script, local_log, settings.timeout + 120,
                                      pb.stop_command(paths.pid_file), on_line, progress)
    finally:
        if password_file is not None:
            run(shell, f"rm -f {quote(password_file)}", check=False)
    if streamed.exit_code == pb.LOCKED_CODE:  # a race: another run started one just now
        local_log.unlink(missing_ok=True)
        theirs = attach.holder_log(streamed.output)
        detail = pb.describe_failure(pb.PlaybookSummary(), pb.LOCKED_CODE,
                                     f"{theirs} (bastion)" if theirs else "", settings.timeout)
        raise StepError(detail)
    _copy_log(shell, paths.log, local_log)
    return _outcome(task, streamed.exit_code, streamed.output, paths.log, local_log,
                    time.monotonic() - started, settings.timeout, forks)


def find_running_playbook(task: Task, settings: KubespraySettings,
                          facts: BastionFacts) -> Result:
    """The playbook a lost run left running on the bastion, if any (read-only)."""
    layout = RemoteLayout.of(settings, facts.home)
    paths = pb.playbook_paths(layout.checkout, layout.venv, layout.logs, "")
    found = attach.parse_running(run(shell_for(task), attach.running_command(paths)).stdout)
    return Result(host=task.host, result=Running(found))


def attach_kubespray_playbook(task: Task, settings: KubespraySettings,
                              running: attach.RunningPlaybook,
                              on_line: LineHandler | None = None,
                              progress: ProgressHandler | None = None) -> Result:
    """Follow a playbook that an earlier, lost run started, until it ends; its outcome
    as if this run had started it."""
    shell = shell_for(task)
    if task.is_dry_run():
        return Result(host=task.host, changed=True,
                      diff=f"would wait for the running playbook (pid {running.pid}, log "
                           f"{running.log})")
    local_log = settings.log_dir / PurePosixPath(running.log).name
    started = time.monotonic()
    pid_file = str(PurePosixPath(running.log).parent / "kubespray.pid")
    if progress is not None:
        progress(pb.ProgressEvent("play", f"attached to the playbook started {running.started}"
                                  f" (pid {running.pid}, log {running.log})"))
    with activity(f"the playbook ({running.log}), re-attached",
                  "the next run runs the playbook again (kubespray is idempotent)"):
        streamed = _stream_to_log(shell, attach.attach_script(running), local_log,
                                  settings.timeout + 120, pb.stop_command(pid_file), on_line,
                                  progress)
    _copy_log(shell, running.log, local_log)
    text = local_log.read_text() if local_log.is_file() else streamed.output
    code = streamed.exit_code
    if code == attach.NO_STATUS:  # its script died with it: the recap says how it went
        summary = pb.parse_playbook_output(text)
        code = 0 if summary.recap and not summary.failed_hosts else 1
    return _outcome(task, code, text, running.log, local_log, time.monotonic() - started,
                    settings.timeout)


def _stream_to_log(shell: HostShell, script: str, local_log: Path, timeout: float,
                   stop_first: str, on_line: LineHandler | None,
                   progress: ProgressHandler | None) -> StreamResult:
    """Run ``script``, each output line to the local log (0600), ``on_line`` and, for
    play/task banners, ``progress``."""
    local_log.parent.mkdir(parents=True, exist_ok=True)
    touch_private(local_log)
    with local_log.open("w") as log:
        def handle(line: str) -> None:
            log.write(line + "\n")
            log.flush()
            if on_line is not None:
                on_line(line)
            event = pb.progress_event(line)
            if event is not None and progress is not None:
                progress(event)

        return stream_command(shell, script, handle, timeout, stop_first=stop_first)


def _outcome(task: Task, exit_code: int | None, output: str, remote_log: str,
             local_log: Path, seconds: float, timeout: float,
             forks: Forks | None = None) -> Result:
    """The playbook's Result: changed (it ran), its recap line as the diff; failed with
    ``describe_failure``'s message in the outcome when it did not succeed."""
    parsed = pb.parse_playbook_output(output)
    failure = "" if exit_code == 0 else pb.describe_failure(
        parsed, exit_code, f"{remote_log} (bastion), {local_log}", timeout)
    outcome = pb.PlaybookOutcome(exit_code, parsed, remote_log, str(local_log), seconds,
                                 forks, failure)
    return Result(host=task.host, changed=True, failed=not outcome.succeeded, result=outcome,
                  diff=outcome.recap_line())


def record_applied(task: Task, settings: KubespraySettings, cluster: Cluster,
                   facts: BastionFacts, desired: Mapping[str, str]) -> Result:
    """After a complete successful run: what it was made from, written atomically."""
    path = applied.record_path(RemoteLayout.of(settings, facts.home).logs, cluster.name)
    write_file(shell_for(task), path, applied.record_text(desired).encode(), mode=0o644)
    return Result(host=task.host, changed=True, diff=f"recorded this run in {path}",
                  result=RemoteFile(path, f"{path} written"))


def _copy_log(shell: HostShell, remote: str, local: Path) -> None:
    """Replace the streamed copy with the bastion's file (exact even if a line was lost)."""
    try:
        data = shell.get(remote)
    except OSError:
        return
    local.write_text(redact(data.decode(errors="replace")))
