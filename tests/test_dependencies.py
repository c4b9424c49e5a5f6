"""Dependency bounds (pyproject.toml) hold for what is installed, and the Docker image's lock respects them.

The bounds say what the code needs: a lower bound at the release that has what we use, and an upper bound
below the next major of every runtime dependency. `requirements.lock` pins the image's versions, hashed.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
IMAGE = RUNTIME + [Requirement(r) for extra in ("ray", "postgres") for r in PROJECT["optional-dependencies"][extra]]
LOCK_TEXT = (REPO / "requirements.lock").read_text()
LOCK = {canonicalize_name(m["name"]): m["version"] for m in re.finditer(r"^(?P<name>[A-Za-z0-9_.\-]+)==(?P<version>\S+)", LOCK_TEXT, re.M)}


@pytest.mark.parametrize("requirement", IMAGE + [Requirement(r) for r in PROJECT["optional-dependencies"]["dev"]], ids=str)
def test_what_is_installed_is_within_the_bounds(requirement: Requirement) -> None:
    try:
        installed = version(requirement.name)
    except PackageNotFoundError:
        pytest.fail(f"{requirement.name} is not installed; `make install` installs it")
    assert requirement.specifier.contains(installed, prereleases=True), f"{requirement.name} {installed} is outside {requirement}"


CALENDAR_VERSIONED = {"attrs"}  # a year is not a major: attrs deprecates before it breaks, whatever the year


@pytest.mark.parametrize("name", sorted(CALENDAR_VERSIONED))
def test_calendar_versioned_dependencies_still_have_a_lower_bound(name: str) -> None:
    [requirement] = [r for r in IMAGE if r.name == name]
    assert any(s.operator in (">=", "==") for s in requirement.specifier), f"{requirement} has no lower bound"


@pytest.mark.parametrize("requirement", [r for r in IMAGE if r.name not in CALENDAR_VERSIONED], ids=str)
def test_every_runtime_dependency_stops_below_its_next_major(requirement: Requirement) -> None:
    uppers = [s for s in requirement.specifier if s.operator in ("<", "==")]
    assert uppers, f"{requirement} has no upper bound; add <{{next major}}"
    lowers = [s for s in requirement.specifier if s.operator in (">=", "==")]
    assert lowers, f"{requirement} has no lower bound: say which release has what the code uses"


@pytest.mark.parametrize("requirement", IMAGE, ids=str)
def test_the_lock_pins_every_dependency_of_the_image_within_its_bounds(requirement: Requirement) -> None:
    name = canonicalize_name(requirement.name)
    assert name in LOCK, f"requirements.lock does not pin {requirement.name}; regenerate it (its header says how)"
    assert requirement.specifier.contains(LOCK[name], prereleases=True), (
        f"requirements.lock pins {name}=={LOCK[name]}, outside {requirement}"
    )
    assert LOCK[name] == version(requirement.name), (
        f"requirements.lock pins {name}=={LOCK[name]} but the tests ran with {version(requirement.name)}; regenerate it"
    )


def test_every_pin_of_the_lock_is_hashed() -> None:
    pins = re.findall(r"^[A-Za-z0-9_.\-]+==\S+ \\\n(?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+", LOCK_TEXT, re.M)
    assert len(pins) == len(LOCK) > 100, "every pin carries its hashes (pip install --require-hashes)"
