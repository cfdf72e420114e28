"""Live progress for people: each step as it starts and ends, each host as it finishes.

A Nornir processor sees every host's result the moment it completes, so a slow host
shows up as the one still missing rather than as a frozen screen.
"""

from __future__ import annotations

import threading

from nornir.core.inventory import Host
from nornir.core.task import AggregatedResult, MultiResult, Task
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kubebastion.deploy import DeployReport, StepReport
from kubebastion.report import outcome_of
from kubebastion.ui.console import STATUS_STYLE
from kubebastion.ui.reports import kubectl_on_bastion


class HostProgress:
    """Nornir processor: one line per host when its task instance completes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()

    def task_started(self, task: Task) -> None:
        pass

    def task_completed(self, task: Task, result: AggregatedResult) -> None:
        pass

    def task_instance_started(self, task: Task, host: Host) -> None:
        pass

    def task_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        if task.name == "close_connections_task":
            return
        outcome = outcome_of(host.name, result)
        style = STATUS_STYLE.get(outcome.status, "")
        detail = f"  {escape(outcome.detail.splitlines()[0])}" if outcome.detail else ""
        with self._lock:
            self.console.print(f"    {escape(task.name)} [dim]{escape(host.name)}[/] "
                               f"[{style}]{outcome.status}[/]{detail}", highlight=False)

    def subtask_instance_started(self, task: Task, host: Host) -> None:
        pass

    def subtask_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        pass


class StepProgress:
    """``on_step`` callback for ``deploy``: a banner per step, its status and duration."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, name: str, step: StepReport | None) -> None:
        if step is None:
            self.console.print(f"[bold]==> {name}[/]", highlight=False)
            return
        style = STATUS_STYLE.get(step.status, "")
        self.console.print(f"[bold]<== {name}[/] [{style}]{step.status}[/] "
                           f"({step.seconds:.1f} s)", highlight=False)


#: Backups a step made (data keys of its rows), shown whole under the row's detail.
_BACKUPS = (("backup", "backup"), ("local_backup", "local backup"))


def summary_table(report: DeployReport) -> Table:
    """One row per step and host: status, detail, and the step's duration."""
    table = Table(title=f"deploy {report.cluster}" + (" (dry run)" if report.dry_run else ""),
                  title_justify="left")
    for column in ("step", "host", "status", "seconds", "detail"):
        table.add_column(column, overflow="fold" if column == "detail" else "ellipsis")
    for step in report.steps:
        style = STATUS_STYLE.get(step.status, "")
        table.add_row(f"[bold]{step.name}[/]", "", f"[{style}]{step.status}[/]",
                      f"{step.seconds:.1f}", escape(step.detail.splitlines()[0]
                                                   if step.detail else ""))
        for row in step.rows:
            row_style = STATUS_STYLE.get(row.status, "")
            first_line = row.detail.splitlines()[0] if row.detail else ""
            if first_line.startswith("--- "):
                first_line = "(a diff: printed below with --dry-run, in full with --json)"
            part = row.data.get("part")
            label = f"{row.host} ({part})" if isinstance(part, str) and part else row.host
            lines = [first_line[:160]] + [  # whole: the path is what one copies from here
                f"{name}: {row.data[key]}" for key, name in _BACKUPS if row.data.get(key)]
            table.add_row("", escape(label), f"[{row_style}]{row.status}[/]", "",
                          escape("\n".join(lines)))
    return table


def print_diffs(report: DeployReport, console: Console) -> None:
    """Every change a (dry) run found, in full, as plain text."""
    for step in report.steps:
        for row in step.rows:
            if row.status == "changed" and row.detail:
                console.print(f"[bold]{escape(step.name)} {escape(row.host)}[/]")
                console.print(row.detail, markup=False, highlight=False, soft_wrap=True)


def show_deploy(console: Console, report: DeployReport) -> None:
    """A dry run's diffs, the step table with durations, the nodes, the next command."""
    if report.dry_run:
        print_diffs(report, console)
    console.print(summary_table(report))
    console.print(f"total {report.seconds:.1f} s"
                  + (" (dry run: nothing was changed)" if report.dry_run else ""))
    fetched = next((s for s in report.steps if s.name == "fetch-kubeconfig"), None)
    if fetched is not None and fetched.extra.get("kubectl"):
        kubectl_on_bastion(console, str(fetched.extra["kubectl"]))
    for step in report.steps:  # kubespray's manual steps (nginx-proxy after a control plane)
        for note in step.extra.get("notes", []):
            console.print(f"note: {escape(str(note))}", soft_wrap=True)
    if report.next_command():
        console.print(f"next: {report.next_command()}")
