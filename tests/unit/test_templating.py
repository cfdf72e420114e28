"""Templates are package data: read through importlib.resources, found in the wheel, and
the checkout's top-level ``templates`` is only a link to them."""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from jinja2 import Environment, TemplateNotFound

from kubebastion import templating

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "kubebastion"


def template_names(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*.j2")}


def rendered_names() -> set[str]:
    """Every template name the library passes to ``render``."""
    calls = re.compile(r"""\brender\(\s*["']([^"']+\.j2)["']""")
    return {name for source in PACKAGE.rglob("*.py")
            for name in calls.findall(source.read_text())}


def test_every_rendered_template_is_package_data() -> None:
    names = rendered_names()
    assert len(names) >= 8, names  # the NAT files and the kubespray inventory
    packaged = templating.packaged_templates()
    missing = [n for n in sorted(names) if not packaged.joinpath(*n.split("/")).is_file()]
    assert not missing, missing


def test_the_top_level_templates_folder_is_a_relative_link_into_the_package() -> None:
    link = REPO / "templates"
    assert link.is_symlink()
    assert not Path(str(link.readlink())).is_absolute(), link.readlink()
    assert link.resolve() == (PACKAGE / "templates").resolve()


def test_templates_are_read_through_importlib_resources(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.delenv(templating.TEMPLATES_ENV, raising=False)
    loader = templating._environment(None).loader
    assert isinstance(loader, templating.PackageResourceLoader)
    text = templating.render("nat/ip-forward.conf.j2", private_cidr="198.18.1.0/24")
    assert "private network 198.18.1.0/24" in text
    assert text.endswith("net.ipv4.ip_forward = 1\n")


@pytest.mark.parametrize("name", ["../pyproject.toml", "nat/../../README.md", "/etc/passwd",
                                  "nat//nat.nft.j2", "nat/missing.j2"],
                         ids=["parent", "parent inside", "absolute", "empty part", "missing"])
def test_names_outside_the_templates_are_not_found(name: str) -> None:
    loader = templating.PackageResourceLoader(templating.packaged_templates())
    with pytest.raises(TemplateNotFound):
        loader.get_source(Environment(), name)


def test_the_wheel_holds_the_templates_and_nothing_of_the_checkout(tmp_path: Path) -> None:
    """A non-editable install renders from the wheel alone; lab/, tests/ and bench/ stay
    in the checkout."""
    built = subprocess.run([str(REPO / "scripts" / "build-wheel"), str(tmp_path / "wheel")],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    with zipfile.ZipFile(built.stdout.split()[0]) as wheel:
        names = wheel.namelist()
    in_wheel = {n.removeprefix("kubebastion/templates/") for n in names
                if n.startswith("kubebastion/templates/")}
    assert rendered_names() <= in_wheel, in_wheel
    assert in_wheel == template_names(PACKAGE / "templates")
    assert "kubebastion/py.typed" in names
    strays = [n for n in names if n.split("/")[0] in ("lab", "tests", "bench", "templates",
                                                      "examples", "scripts", "inventory")]
    assert not strays, strays
