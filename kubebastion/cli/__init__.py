"""kubebastion's command line: the ``kubebastion`` console command, and the same tasks as
an Invoke collection for ``invoke`` (this checkout's ``tasks.py``, or a user's own)::

    from kubebastion.cli import collection
    namespace = collection()          # deploy, check, nat, kubespray, ... as invoke tasks

The console command is Invoke's own ``Program`` given that collection, so options,
``--help``, ``--list`` and exit codes are the ones ``invoke`` gives in a checkout; it
finds ``nornir_config.yaml`` in the current directory, or takes ``--config PATH``.
"""

from __future__ import annotations

from invoke.program import Program

from kubebastion import __version__
from kubebastion.cli.tasks import DEFAULT_CONFIG, collection

__all__ = ["DEFAULT_CONFIG", "collection", "main", "program"]

COMMAND = "kubebastion"


def program() -> Program:
    """The ``kubebastion`` command: Invoke's Program bundled with kubebastion's tasks."""
    return Program(namespace=collection(COMMAND), name=COMMAND, binary=COMMAND,
                   version=__version__)


def main() -> None:
    """Console entry point (``[project.scripts]``); exits with the task's code."""
    program().run()
