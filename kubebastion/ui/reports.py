"""What each command prints for people once its run is over (``--json`` prints the
document instead). One function per command, so the command itself stays one call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from kubebastion.egress.diagnose import nat_fixes
from kubebastion.report import CHANGED, FAILED, HostOutcome
from kubebastion.ui.console import node_table, outcome_table

if TYPE_CHECKING:  # the fetch step's modules load only when it runs (`--list` stays quick)
    from kubebastion.day2.commands import DayTwoReport
    from kubebastion.kubeconfig.task import FetchReport


def _summarised(rows: Sequence[HostOutcome], detail_key: str | None = None
                ) -> list[HostOutcome]:
    """``detail_key`` shows that data field instead of the diff on hosts that did not fail
    (the table escapes markup itself)."""
    safe = []
    for row in rows:
        detail = row.detail
        if detail_key and row.status != FAILED:
            detail = str(row.data.get(detail_key, ""))
        safe.append(HostOutcome(row.host, row.status, detail, row.data))
    return safe


def show_check(console: Console, rows: Sequence[HostOutcome],
               egress_rows: Sequence[HostOutcome] | None, nat_command: str) -> None:
    """The check table; with ``--egress`` the egress table and, when NAT on the bastion
    is the fix, ``nat_command`` as a hint."""
    console.print(outcome_table("check", rows, ["user", "sudo", "python3", "os_release"]))
    if egress_rows is None:
        return
    console.print(outcome_table("egress", _summarised(egress_rows), [
        "gateway", "reached", "ip_forward", "masquerade", "private_address", "provider"]))
    if nat_fixes(r.detail for r in egress_rows):
        console.print(f"hint: `{nat_command}` makes the bastion forward and masquerade")


def show_nat(console: Console, rows: Sequence[HostOutcome]) -> None:
    """The NAT table, then each bastion's planned or applied changes in full."""
    console.print(outcome_table("nat", _summarised(rows, "summary"),
                                ["uplink", "private_cidr", "forward_jump"]))
    for row in rows:  # a changed row's detail is its diff (an unchanged one's: its summary)
        if row.status == CHANGED and row.detail:
            console.print(row.detail, markup=False, highlight=False, soft_wrap=True)


def show_admin_conf(console: Console, rows: Sequence[HostOutcome]) -> None:
    """The admin-conf table, then ``kubectl get node`` as each control plane saw it."""
    console.print(outcome_table("admin-conf", rows, ["state", "path", "backup"]))
    for row in rows:
        if row.data.get("kubectl"):
            console.print(f"[bold]{row.host}[/]: kubectl get node")
            console.print(escape(str(row.data["kubectl"])))


def kubectl_on_bastion(console: Console, text: str) -> None:
    """``kubectl get nodes`` as run on the bastion."""
    console.print("[bold]kubectl get nodes[/] (on the bastion)")
    console.print(escape(text))


def show_fetch_kubeconfig(console: Console, report: FetchReport) -> None:
    """The kubeconfig table, what changed, then the nodes as the bastion sees them."""
    console.print(outcome_table("fetch-kubeconfig", report.rows,
                                ["context", "path", "server", "backup"]))
    for row in report.rows:
        if row.detail and row.status != FAILED:
            console.print(escape(row.detail))
    if report.kubectl:
        kubectl_on_bastion(console, report.kubectl)
    elif report.nodes:
        console.print(node_table(report.nodes))


def show_day_two(console: Console, report: DayTwoReport) -> None:
    """remove-node, upgrade, reset: the plan, a row per part and host, what to do next."""
    if report.plan:
        console.print(f"[bold]plan[/]: {escape(report.plan)}"
                      + (" (dry run: nothing was changed)" if report.dry_run else ""))
    console.print(outcome_table(report.command, report.rows, ["part"]))
    for note in report.notes:
        console.print(f"next: {escape(note)}", soft_wrap=True)
