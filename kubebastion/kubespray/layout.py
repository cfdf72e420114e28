"""Where everything lives on the bastion, with ``~`` resolved against the user's home."""

from __future__ import annotations

from dataclasses import dataclass

from kubebastion.kubespray.settings import WHEEL_CACHE, KubespraySettings, expand_home
from kubebastion.kubespray.sshtrust import KEY_FILE, KNOWN_HOSTS_FILE
from kubebastion.kubespray.wheelhouse import UV_VERSION

#: An online bastion's uv, installed from PyPI into a venv of its own.
UV_TOOL = f"~/.cache/kubebastion/uv-{UV_VERSION}"


@dataclass(frozen=True)
class RemoteLayout:
    checkout: str
    venv: str
    logs: str
    key: str
    known_hosts: str
    wheel_cache: str
    uv_tool: str

    @classmethod
    def of(cls, settings: KubespraySettings, home: str) -> RemoteLayout:
        return cls(
            checkout=expand_home(settings.checkout_dir, home),
            venv=expand_home(settings.venv_dir, home),
            logs=expand_home(settings.remote_log_dir, home),
            key=expand_home(KEY_FILE, home),
            known_hosts=expand_home(KNOWN_HOSTS_FILE, home),
            wheel_cache=expand_home(WHEEL_CACHE, home),
            uv_tool=expand_home(UV_TOOL, home),
        )
