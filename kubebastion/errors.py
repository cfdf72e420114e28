"""One exception tree, so callers can catch ``KubeBastionError`` and print its message.

Every message names the bad value and says how to fix it: operators read these at the
end of a long run, often without the code at hand.
"""

from __future__ import annotations


class KubeBastionError(Exception):
    """Root of every error kubebastion raises on purpose."""


class InventoryError(KubeBastionError):
    """The inventory is invalid; raised before any SSH, listing every problem at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            super().__init__(f"invalid inventory: {self.problems[0]}")
            return
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid inventory ({len(self.problems)} problems):\n{lines}")


class ConfigError(KubeBastionError):
    """The Nornir config file or an option is unusable."""


class SSHError(KubeBastionError):
    """A host could not be reached or logged into."""


class UnknownHostKeyError(SSHError):
    """The host is not in known_hosts; we refuse rather than trust on first use."""


class HostKeyChangedError(SSHError):
    """The host presented a key other than the one in known_hosts."""


class AuthenticationError(SSHError):
    """The SSH server rejected our key."""


class SudoError(KubeBastionError):
    """sudo refused: a password is needed, or the one given is wrong."""


class RemoteCommandError(KubeBastionError):
    """A command on a host exited non-zero or timed out."""

    def __init__(self, host: str, command: str, exit_code: int | None, stderr: str) -> None:
        self.host = host
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr
        status = "timed out" if exit_code is None else f"exited {exit_code}"
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
        super().__init__(f"{host}: `{command}` {status}: {detail}")


class StepError(KubeBastionError):
    """A step found a problem it cannot fix by itself (the message says what to do)."""


class KubeconfigError(KubeBastionError):
    """A kubeconfig file is malformed or cannot be merged."""


class CertificateSANError(KubeBastionError):
    """The API address is not in the API server certificate's SANs."""


class RunLockedError(KubeBastionError):
    """Another run holds the cluster's lock on the bastion; nothing was changed."""
