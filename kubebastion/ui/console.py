"""Printing for people (rich tables) and programs (JSON). No logic lives here."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kubebastion.report import CHANGED, FAILED, OK, SKIPPED, HostOutcome
from kubebastion.secrets import redact

STATUS_STYLE = {OK: "green", CHANGED: "yellow", FAILED: "bold red", SKIPPED: "dim"}



def _width(stream: object) -> int | None:
    """Rich assumes 80 columns off a terminal; logs and CI are wider than that."""
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        return None
    return int(os.environ.get("COLUMNS", "140"))


console = Console(highlight=False, width=_width(sys.stdout))
err_console = Console(stderr=True, highlight=False, width=_width(sys.stderr))


def print_json(document: Any) -> None:
    sys.stdout.write(redact(json.dumps(document, indent=2, sort_keys=True, default=str)) + "\n")


def outcome_table(title: str, rows: Sequence[HostOutcome], columns: Sequence[str]) -> Table:
    """A table with host, status, the given data columns, then the detail."""
    table = Table(title=title, title_justify="left")
    table.add_column("host")
    table.add_column("status")
    for column in columns:  # folded, never cut: a backup path is copied from here
        table.add_column(column, overflow="fold")
    table.add_column("detail", overflow="fold")
    for row in rows:
        style = STATUS_STYLE.get(row.status, "")
        values = [escape(str(row.data.get(c, ""))) for c in columns]
        table.add_row(escape(row.host), f"[{style}]{row.status}[/]", *values,
                      escape(row.detail))
    return table


def failed_hosts(rows: Sequence[HostOutcome]) -> list[str]:
    return [r.host for r in rows if r.status == FAILED]


def failure_summary(what: str, rows: Sequence[HostOutcome]) -> str:
    """One line per failed host, unwrapped: the exit message operators copy from."""
    lines = [f"{what} failed on {len(failed_hosts(rows))} host(s):"]
    lines += [f"  {r.host}: {r.detail}" for r in rows if r.status == FAILED]
    return "\n".join(lines)


def node_table(nodes: Sequence[Any]) -> Table:
    """kubectl-style NAME/STATUS/ROLES/VERSION."""
    table = Table(title="nodes", title_justify="left")
    for column in ("name", "status", "roles", "version"):
        table.add_column(column.upper())
    for node in nodes:
        style = "green" if node.status == "Ready" else "bold red"
        table.add_row(escape(node.name), f"[{style}]{node.status}[/]", escape(node.roles),
                      escape(node.version))
    return table
