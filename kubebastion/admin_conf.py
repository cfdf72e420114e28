"""Step 3: kubespray's admin.conf becomes the login user's ``~/.kube/config``.

By hand: ``sudo cp /etc/kubernetes/admin.conf ~/; sudo chown ubuntu:ubuntu ~/admin.conf;
mkdir -p .kube; mv ~/admin.conf ~/.kube/config``. Here the user is the inventory's login
user (not a hard-coded ``ubuntu``), the file is compared by checksum first, a different
existing config is backed up, and the copy lands by rename so it is never half-written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from nornir.core.task import Result, Task

from kubebastion.atomic_file import backup_suffix
from kubebastion.errors import StepError
from kubebastion.kubeconfig.admin import ADMIN_CONF
from kubebastion.report import HostOutcome, outcomes
from kubebastion.runlock import cluster_lock
from kubebastion.runtime import Run
from kubebastion.ssh.remote import parse_key_values, quote, run
from kubebastion.ssh.shell import shell_for


@dataclass(frozen=True)
class AdminConfOutcome:
    state: str  # unchanged | changed | would-change
    path: str
    backup: str
    kubectl: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def install_script(user: str, dry_run: bool, suffix: str) -> str:
    """Runs as root: compare, back up, install 0600 user:group, rename into place."""
    u = quote(user)
    compare = [
        "set -e",
        f"src={ADMIN_CONF}",
        'if [ ! -f "$src" ]; then echo "state=missing"; exit 4; fi',
        f"home=$(getent passwd {u} | cut -d: -f6)",
        f"group=$(id -gn {u})",
        'dir="$home/.kube"; dst="$dir/config"',
        'echo "path=$dst"',
        "want=$(sha256sum \"$src\" | cut -d' ' -f1)",
        "have=none; fstate=none; dstate=none",
        "if [ -f \"$dst\" ]; then have=$(sha256sum \"$dst\" | cut -d' ' -f1); "
        "fstate=$(stat -c '%a %U %G' \"$dst\"); fi",
        "if [ -d \"$dir\" ]; then dstate=$(stat -c '%a %U %G' \"$dir\"); fi",
        f'if [ "$have" = "$want" ] && [ "$fstate" = "600 {user} $group" ] && '
        f'[ "$dstate" = "700 {user} $group" ]; then echo "state=unchanged"; exit 0; fi',
    ]
    if dry_run:
        return "\n".join([*compare, 'echo "state=would-change"'])
    return "\n".join([
        *compare,
        f'install -d -m 700 -o {u} -g "$group" "$dir"',
        f'if [ -f "$dst" ] && [ "$have" != "$want" ]; then '
        f'cp -p "$dst" "$dst.{suffix}"; echo "backup=$dst.{suffix}"; fi',
        f'install -m 600 -o {u} -g "$group" "$src" "$dir/.config.kubebastion-tmp"',
        'mv -f "$dir/.config.kubebastion-tmp" "$dst"',
        'echo "state=changed"',
    ])


def parse_install_output(stdout: str) -> dict[str, str]:
    return parse_key_values(stdout)


KUBECTL_CHECK = ("if command -v kubectl >/dev/null 2>&1; then "
                 "kubectl get node --request-timeout=15s; else echo 'kubectl not installed'; fi")


def install_admin_conf(task: Task) -> Result:
    """On a control plane: admin.conf to ``~/.kube/config`` (0600, the user's), then
    ``kubectl get node`` as that user."""
    shell = shell_for(task)
    user = task.host.username
    if not user:
        raise StepError(f"{task.host.name}: no login user in the inventory")
    result = run(shell, install_script(user, task.is_dry_run(), backup_suffix()), sudo=True,
                 check=False, display=f"install {ADMIN_CONF} for {user}")
    values = parse_install_output(result.stdout)
    if values.get("state") == "missing":
        raise StepError(f"{task.host.name}: {ADMIN_CONF} does not exist: run the kubespray "
                        "step first (`invoke kubespray`)")
    if not result.ok or "state" not in values:
        raise StepError(f"{task.host.name}: installing {ADMIN_CONF} failed: "
                        f"{result.stderr.strip() or result.stdout.strip()}")
    kubectl = ""
    if not task.is_dry_run():
        check = run(shell, KUBECTL_CHECK, check=False, timeout=30)
        if not check.ok:
            raise StepError(f"{task.host.name}: `kubectl get node` as {user} failed: "
                            f"{check.stderr.strip()}")
        kubectl = check.stdout.strip()
    outcome = AdminConfOutcome(values["state"], values.get("path", ""),
                               values.get("backup", ""), kubectl)
    changed = outcome.state in ("changed", "would-change")
    diff = f"{ADMIN_CONF} -> {outcome.path}" if changed else ""
    return Result(host=task.host, result=outcome, changed=changed, diff=diff)


def run_admin_conf(run: Run) -> list[HostOutcome]:
    """install_admin_conf on every control plane."""
    names = {n.name for n in run.cluster.control_planes}
    selected = run.nornir.filter(filter_func=lambda host: host.name in names)
    with cluster_lock(run, "admin-conf"):
        return outcomes(selected.run(task=install_admin_conf, name="admin-conf"))
