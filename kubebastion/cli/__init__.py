"""kubebastion's command line: the ``kubebastion`` console command, and the same tasks as
an Invoke collection for ``invoke`` (this checkout's ``tasks.py``, or a user's own)::

    from kubebastion.cli import collection
    namespace = collection()          # deploy, check, nat, kubespray, ... as invoke tasks

The console command is Invoke's own ``Program`` given that collection, so task options,
``--help``, ``--list`` and exit codes are the ones ``invoke`` gives in a checkout; it
finds ``nornir_config.yaml`` in the current directory, or takes ``--config PATH``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from invoke.exceptions import Exit, ParseError
from invoke.parser.argument import Argument
from invoke.program import Program

from kubebastion import __version__
from kubebastion.cli.tasks import DEFAULT_CONFIG, collection

__all__ = ["DEFAULT_CONFIG", "KubebastionProgram", "collection", "main", "program"]

COMMAND = "kubebastion"
#: The exit code of a usage error (README: 2 for bad inventory or usage; Invoke says 1).
USAGE_ERROR = 2
#: Invoke's core flags that still mean something here: menus, help, completion, debug.
CORE_FLAGS = frozenset({"complete", "debug", "help", "list", "list-depth", "list-format",
                        "print-completion-script", "version", "write-pyc"})


class KubebastionProgram(Program):
    """Invoke's Program without its flags for local shell commands and for its own config
    files (``--dry``, ``--echo``, ``--pty``, ``--hide``, ``--warn-only``,
    ``--command-timeout``, ``--prompt-for-sudo-password``, ``-f/--config``). No task runs
    a local shell command, and two of them read like ours but are not: ``--dry`` is no
    dry run (a task's ``--dry-run`` is), ``--config`` no Nornir config. Given before the
    task, they now end in a usage error instead of a real run."""

    def core_args(self) -> list[Argument]:
        return [arg for arg in super().core_args() if arg.name in CORE_FLAGS]

    def parse_core(self, argv: list[str] | None) -> None:
        with _usage_error():
            super().parse_core(argv)

    def parse_tasks(self) -> None:
        with _usage_error():
            super().parse_tasks()

    def parse_cleanup(self) -> None:
        with _usage_error():
            super().parse_cleanup()

    def update_config(self, merge: bool = True) -> None:
        """Nothing from the dropped flags or a runtime invoke config to load."""
        if merge:
            self.config.merge()


@contextmanager
def _usage_error() -> Iterator[None]:
    """An unknown flag or task, a missing value: Invoke's parser says what, and exits 1,
    the code of a failed step here; the same message exits ``USAGE_ERROR``."""
    try:
        yield
    except ParseError as exc:
        raise Exit(str(exc), code=USAGE_ERROR) from None


def program() -> Program:
    """The ``kubebastion`` command: Invoke's Program bundled with kubebastion's tasks."""
    return KubebastionProgram(namespace=collection(COMMAND), name=COMMAND, binary=COMMAND,
                              version=__version__)


def main() -> None:
    """Console entry point (``[project.scripts]``); exits with the task's code."""
    program().run()
