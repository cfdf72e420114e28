"""What the kubespray tasks return (the task contract's ``result``: a dataclass with
``as_dict()`` and a one-line ``summary``), and what the later stages read from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kubebastion.kubespray.attach import RunningPlaybook
from kubebastion.kubespray.bastion import BastionFacts
from kubebastion.kubespray.sshtrust import BastionKey


@dataclass(frozen=True)
class PythonCheck:
    """The bastion's chosen Python against this kubespray; failed when ``problems``."""

    interpreter: str
    python: str  # "" when missing
    problems: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        return f"{self.interpreter}: Python {self.python or 'missing'}"

    def as_dict(self) -> dict[str, Any]:
        return {"python": self.python, "interpreter": self.interpreter,
                "summary": self.summary}


@dataclass(frozen=True)
class SourceState:
    """The checkout's kubespray: label and identity (what ``applied`` records)."""

    version: str
    identity: str
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VenvState:
    """The venv, by the sha256 of the requirements it was built from."""

    requirements_sha256: str
    summary: str = ""
    #: Built by this run: which installer (uv or pip) and why; what was sent for it.
    installer: dict[str, Any] | None = None
    wheelhouse: str = ""

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"requirements": self.requirements_sha256[:12],
                                "requirements_sha256": self.requirements_sha256,
                                "summary": self.summary}
        if self.installer is not None:
            data.update(installer=self.installer, wheelhouse=self.wheelhouse)
        return data


@dataclass(frozen=True)
class RemoteFile:
    """A file (or folder) on the bastion that a task keeps up to date."""

    path: str
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KeyState:
    """The bastion user's SSH key (its public half: ``None`` in a dry run before it exists)."""

    key: BastionKey
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.key.state, "public_key": self.key.public_key,
                "summary": self.summary}


@dataclass(frozen=True)
class Authorized:
    """A node's authorized_keys holds the bastion's key (or, in a dry run, would)."""

    summary: str = "the bastion's key is authorized"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Running:
    """The playbook a lost run left running on the bastion, if any."""

    running: RunningPlaybook | None

    @property
    def summary(self) -> str:
        if self.running is None:
            return "no playbook running"
        return f"a playbook runs (pid {self.running.pid}, log {self.running.log})"

    def as_dict(self) -> dict[str, Any]:
        return {"running": asdict(self.running) if self.running else None,
                "summary": self.summary}


@dataclass(frozen=True)
class Prepared:
    """The bastion, ready for the playbook: what the later stages need. ``running``: a
    lost run's playbook, in which case nothing was prepared (``key`` None)."""

    facts: BastionFacts
    key: BastionKey | None = None
    running: RunningPlaybook | None = None
    desired: dict[str, str] = field(default_factory=dict)
    recorded: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"facts": self.facts.as_dict(),
                "key": self.key.public_key if self.key else None,
                "running": asdict(self.running) if self.running else None,
                "desired": dict(self.desired)}
