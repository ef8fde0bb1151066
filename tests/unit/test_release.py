"""
The release check: ``python -m build`` makes an sdist and a wheel that a package index would accept.

twine is not installable here, so this checks what ``twine check`` checks, with the library twine
itself validates with (``packaging.metadata``): the core metadata parses and validates, the long
description is there with its content type, and more: every classifier is a known trove classifier,
the project URLs and the license file are there. Then the wheel's file list: the package, its shell
scripts and every template, and nothing else (no tests, no sandbox, no deploys/ of the checkout).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path

import pytest
import sources

import pyinfra_mastodon

try:  # the test extra (pip install -e '.[test]') brings them; without them this check fails, never skips
    import build  # noqa: F401
    import trove_classifiers
    from packaging.metadata import Metadata
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError(f"the release check needs the test extra: pip install -e '.[test]' ({error})") from None

REPO = Path(__file__).resolve().parents[2]
VERSION = pyinfra_mastodon.__version__


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    source = sources.copy(tmp_path_factory.mktemp("source"))
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def wheel(dist) -> Path:
    (path,) = dist.glob("*.whl")
    return path


@pytest.fixture(scope="module")
def sdist(dist) -> Path:
    (path,) = dist.glob("*.tar.gz")
    return path


def _wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def _wheel_metadata(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(f"pyinfra_mastodon-{VERSION}.dist-info/METADATA")


def _sdist_metadata(sdist: Path) -> bytes:
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(f"pyinfra_mastodon-{VERSION}/PKG-INFO")
        assert member is not None
        return member.read()


def test_the_artifacts_carry_the_one_version(wheel, sdist):
    assert wheel.name == f"pyinfra_mastodon-{VERSION}-py3-none-any.whl"
    assert sdist.name == f"pyinfra_mastodon-{VERSION}.tar.gz"


@pytest.mark.parametrize("artifact", ["wheel", "sdist"])
def test_metadata_is_valid_and_complete(artifact, wheel, sdist):
    raw = _wheel_metadata(wheel) if artifact == "wheel" else _sdist_metadata(sdist)
    meta = Metadata.from_email(raw, validate=True)  # raises on any invalid or unknown field
    assert meta.name == "pyinfra-mastodon"
    assert str(meta.version) == VERSION
    assert meta.summary
    assert meta.license_expression == "MIT"
    assert meta.license_files == ["LICENSE"]
    assert meta.requires_python is not None
    assert {"Homepage", "Source", "Issues"} <= set(meta.project_urls or {})
    unknown = [c for c in meta.classifiers or [] if c not in trove_classifiers.classifiers]
    assert meta.classifiers and not unknown, unknown
    # twine check's own rule: a long description, with a content type saying how to render it
    assert meta.description_content_type == "text/markdown"
    body = BytesParser(policy=compat32).parsebytes(raw).get_payload()
    assert body.strip().startswith("# pyinfra-mastodon"), body[:200]


def test_wheel_holds_the_license_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(f"pyinfra_mastodon-{VERSION}.dist-info/licenses/LICENSE").decode()
    assert text.startswith("MIT License")
    assert text == (REPO / "LICENSE").read_text()


def test_wheel_holds_the_package_its_scripts_and_every_template_and_nothing_else(wheel):
    files = _wheel_files(wheel)
    outside = [f for f in files if not f.startswith(("pyinfra_mastodon/", f"pyinfra_mastodon-{VERSION}.dist-info/"))]
    assert outside == []
    assert not [f for f in files if "test" in f.split("/")[-1] or "sandbox" in f or f.startswith("deploys/")]
    templates = sorted(str(p.relative_to(REPO / "templates")) for p in (REPO / "templates").rglob("*.j2"))
    assert templates and [f"pyinfra_mastodon/templates/{t}" for t in templates] == sorted(
        f for f in files if f.startswith("pyinfra_mastodon/templates/")
    )
    scripts = sorted(p.name for p in (REPO / "pyinfra_mastodon" / "sh").glob("*.sh"))
    assert scripts and [f"pyinfra_mastodon/sh/{s}" for s in scripts] == sorted(
        f for f in files if f.startswith("pyinfra_mastodon/sh/")
    )
    modules = sorted(str(p.relative_to(REPO)) for p in (REPO / "pyinfra_mastodon").rglob("*.py"))
    assert modules == sorted(f for f in files if f.endswith(".py"))


def test_sdist_holds_no_sandbox_and_no_local_state(sdist):
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    top = f"pyinfra_mastodon-{VERSION}/"
    assert all(name == top.rstrip("/") or name.startswith(top) for name in names)
    assert not [n for n in names if "/.sandbox" in n or "/tests/" in n or "/.venv" in n or "/.git" in n]
    assert f"{top}LICENSE" in names and f"{top}templates/docker-compose.yml.j2" in names
