"""Settings from the inventory and the command line: paths, sources, the tarball's pinned
sha256, extra vars and the preflight."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from kubebastion.errors import ConfigError
from kubebastion.kubespray.settings import (
    DEFAULT_REPOSITORY,
    DEFAULT_TIMEOUT,
    DirectorySource,
    GitSource,
    TarballSource,
    default_wheelhouse,
    expand_home,
    is_git_url,
    settings_from,
)


def checkout(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cluster.yml").write_text("---\n")
    (root / "requirements.txt").write_text("ansible==11.13.0\n")
    return root


def test_defaults_clone_the_official_release(tmp_path: Path) -> None:
    settings = settings_from(None, tmp_path)
    assert settings.source == GitSource(DEFAULT_REPOSITORY, "v2.31.0")
    assert (settings.checkout_dir, settings.venv_dir) == ("~/kubespray", "~/kubespray-venv")
    assert settings.wheelhouse is None and settings.timeout == DEFAULT_TIMEOUT
    assert settings.log_dir == tmp_path / "logs"


def test_inventory_paths_are_relative_to_the_config(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    checkout(tmp_path / "conf" / "ks")
    monkeypatch.chdir(tmp_path)
    data: dict[str, Any] = {"source": "ks", "wheelhouse": "wh", "timeout": 60,
                            "venv_dir": "/opt/venv/", "version": "v2.30.0"}
    settings = settings_from(data, tmp_path / "conf")
    assert settings.source == DirectorySource(tmp_path / "conf" / "ks")
    assert settings.wheelhouse == tmp_path / "conf" / "wh"
    assert settings.venv_dir == "/opt/venv" and settings.timeout == 60.0
    assert settings.version == "v2.30.0"
    # command-line values win, relative to the current folder
    checkout(tmp_path / "other")
    cli = settings_from(data, tmp_path / "conf", source="other", wheelhouse="w2", timeout=5,
                        version="v2.31.0", force=True)
    assert cli.source == DirectorySource(tmp_path / "other")
    assert cli.wheelhouse == tmp_path / "w2" and cli.timeout == 5 and cli.force
    assert settings_from({"wheelhouse": True}, tmp_path).wheelhouse == (
        default_wheelhouse())


def test_python_setting(tmp_path: Path) -> None:
    assert settings_from(None, tmp_path).python == "python3"
    assert settings_from({"python": "python3.11"}, tmp_path).python == "python3.11"
    assert settings_from({"python": "/opt/py/bin/python3"}, tmp_path).python == (
        "/opt/py/bin/python3")


def test_sources(tmp_path: Path) -> None:
    tarball = tmp_path / "kubespray-2.31.0.tar.gz"
    tarball.write_bytes(b"")
    assert settings_from({"source": str(tarball)}, tmp_path).source == TarballSource(tarball)
    assert settings_from({"source": "git@github.com:me/kubespray.git"}, tmp_path).source == (
        GitSource("git@github.com:me/kubespray.git", "v2.31.0"))
    assert is_git_url("https://github.com/kubernetes-sigs/kubespray.git")
    assert not is_git_url("lab/kubespray")


@pytest.mark.parametrize(("data", "message"), [
    ({"sorce": "x"}, "unknown kubespray setting(s): sorce"),
    ({"source": "missing/dir"}, "neither a git URL nor an existing path"),
    ({"source": "notkubespray"}, "is not a kubespray checkout (missing cluster.yml"),
    ({"version": "v1;rm"}, "is not a git tag or branch"),
    ({"timeout": 0}, "timeout must be a positive number"),
    ({"timeout": True}, "timeout must be a positive number"),
    ({"venv_dir": "relative"}, "must be an absolute path or start with ~/"),
    ({"checkout_dir": "~"}, "must be an absolute path or start with ~/"),
    ({"wheelhouse": 3}, "wheelhouse must be a folder or true"),
    ({"source": 3}, "source must be a string"),
    ({"python": "python3; rm -rf ~"}, "python 'python3; rm -rf ~' must be a command name"),
    ({"python": "bin/python3"}, "must be a command name (python3.11) or an absolute path"),
    ({"uv": "yes"}, "uv must be true or false, not 'yes'"),
    ({"forks": 0}, "forks must be auto or a whole number from 1 to 1000, not 0"),
    ({"forks": "many"}, "forks must be auto or a whole number from 1 to 1000, not 'many'"),
    ({"forks": True}, "forks must be auto or a whole number"),
], ids=["typo", "missing", "not-kubespray", "version", "zero", "bool", "relative", "home",
        "wheelhouse", "type", "python-shell", "python-relative", "uv", "forks-zero",
        "forks-text", "forks-bool"])
def test_bad_settings(tmp_path: Path, data: dict[str, Any], message: str) -> None:
    (tmp_path / "notkubespray").mkdir()
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings_from(data, tmp_path)


def test_uv_and_forks_settings(tmp_path: Path) -> None:
    default = settings_from({}, tmp_path)
    assert default.uv is True and default.forks is None
    assert settings_from({"forks": "auto"}, tmp_path).forks is None
    chosen = settings_from({"uv": False, "forks": 12}, tmp_path)
    assert chosen.uv is False and chosen.forks == 12


def test_expand_home() -> None:
    assert expand_home("~/kubespray", "/home/u") == "/home/u/kubespray"
    assert expand_home("/opt/k", "/home/u") == "/opt/k"
    assert expand_home("~", "/home/u") == "/home/u"


def tarball(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "kubespray-2.31.0.tar.gz"
    path.write_bytes(b"not really a tarball, but bytes to hash")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_pinned_sha256_that_matches_is_kept(tmp_path: Path) -> None:
    path, digest = tarball(tmp_path)
    settings = settings_from({"source": str(path), "source_sha256": digest.upper()}, tmp_path)
    assert settings.source == TarballSource(path, digest)
    assert settings_from({}, tmp_path, source=str(path),
                         source_sha256=f"sha256:{digest}").source == TarballSource(path, digest)


def test_a_wrong_sha256_stops_before_any_upload_and_names_both(tmp_path: Path) -> None:
    path, digest = tarball(tmp_path)
    wrong = "0" * 64
    with pytest.raises(ConfigError) as caught:
        settings_from({"source": str(path), "source_sha256": wrong}, tmp_path)
    message = str(caught.value)
    assert digest in message and wrong in message and "nothing was uploaded" in message


@pytest.mark.parametrize(("source", "sha", "message"), [
    (None, "abc", "is not a sha256"),
    ("dir", "0" * 64, "applies to a tarball source"),
    ("git", "0" * 64, "applies to a tarball source"),
], ids=["malformed", "directory", "git"])
def test_a_sha256_is_refused_where_it_cannot_apply(tmp_path: Path, source: str | None,
                                                   sha: str, message: str) -> None:
    path, _ = tarball(tmp_path)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "cluster.yml").write_text("")
    (checkout / "requirements.txt").write_text("")
    chosen = {None: str(path), "dir": str(checkout),
              "git": "https://example.invalid/kubespray.git"}[source]
    with pytest.raises(ConfigError, match=message):
        settings_from({"source": chosen, "source_sha256": sha}, tmp_path)


def test_settings_carry_extra_vars_and_preflight(tmp_path: Path) -> None:
    settings = settings_from({"extra_vars": ["a=1"], "preflight": False}, tmp_path,
                             extra_vars=["a=2"], limit="k8s-m0")
    assert settings.playbook.argv() == ["--limit", "k8s-m0", "-e", "a=1", "-e", "a=2"]
    assert settings.preflight is False
    assert settings_from({}, tmp_path).preflight is True
    assert settings_from({"preflight": False}, tmp_path, preflight=True).preflight is True
    with pytest.raises(ConfigError, match="preflight must be true or false"):
        settings_from({"preflight": "no"}, tmp_path)
    with pytest.raises(ConfigError, match="extra_vars must be a list"):
        settings_from({"extra_vars": "a=1"}, tmp_path)
