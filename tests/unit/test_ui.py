"""The tables operators copy paths from: a backup path is shown whole, folded over lines
on a narrow terminal rather than cut with an ellipsis."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from kubebastion.deploy import DeployReport, StepReport
from kubebastion.report import HostOutcome
from kubebastion.ui.console import outcome_table
from kubebastion.ui.progress import summary_table

BACKUP = "/home/operator-with-a-long-name/.kube/config.kubebastion-backup-20261129T170000Z"
ROW = HostOutcome("bastion", "changed", "--- /home/u/.kube/config (before)\n+++ after",
                  {"context": "lab", "path": "/home/operator-with-a-long-name/.kube/config",
                   "server": "https://198.18.1.10:6443", "backup": BACKUP})


def column(table: Table, index: int, width: int = 80) -> str:
    """The text of one column on a terminal ``width`` wide, its folded lines joined."""
    console = Console(width=width, record=True, color_system=None)
    console.print(table)
    cells = [line.split("│")[index + 1].strip()
             for line in console.export_text().splitlines() if line.startswith("│")]
    return "".join(cells)


def test_fetch_kubeconfig_table_shows_the_backup_whole() -> None:
    table = outcome_table("fetch-kubeconfig", [ROW], ["context", "path", "server", "backup"])
    assert column(table, 5) == BACKUP


def test_deploy_summary_shows_the_backup_whole() -> None:
    report = DeployReport("lab", dry_run=False, steps=[
        StepReport("fetch-kubeconfig", "changed", 1.0, rows=[ROW])])
    assert column(summary_table(report), 4).endswith(f"backup:{BACKUP}")
