"""Showing the kubespray step to people: live play/task lines, then the report table."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from kubebastion.kubespray.deploy import KubesprayReport
from kubebastion.kubespray.playbook import ProgressEvent
from kubebastion.ui.console import outcome_table

_STYLE = {"play": "bold", "task": "", "handler": "", "failure": "bold red",
          "recap": "bold", "error": "bold red"}
_INDENT = {"task": "  ", "handler": "  ", "failure": "    "}


class ProgressPrinter:
    """Prints each playbook event as it arrives (a callback for ``deploy_kubespray``)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, event: ProgressEvent) -> None:
        style = _STYLE.get(event.kind, "")
        label = {"play": "PLAY ", "task": "TASK ", "handler": "HANDLER ",
                 "error": "ERROR "}.get(event.kind, "")
        text = f"{_INDENT.get(event.kind, '')}{label}{escape(event.text)}"
        self.console.print(f"[{style}]{text}[/]" if style else text, highlight=False)


def print_report(report: KubesprayReport, console: Console) -> None:
    console.print(outcome_table("kubespray", report.rows, ["part"]))
