"""The floor lane of .ci/run installs .ci/floor-constraints.txt: every lower bound that
pyproject.toml declares must be pinned there exactly, so that the lane cannot drift from the
ranges the package promises. Pure parsing: nothing is installed."""

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / ".ci/floor-constraints.txt"


def _declared():
    """[project] dependencies and the `test` and `docs` extras, as packaging Requirements."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    lines = project["dependencies"] + extras["test"] + extras["docs"]
    return [Requirement(line) for line in lines]


def _pin_lines():
    """(line number, requirement text, comment) of each constraint line."""
    out = []
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        text, _, comment = line.partition("#")
        if text.strip():
            out.append((number, text.strip(), comment.strip()))
    return out


def _pins():
    pins = {}
    for number, text, _ in _pin_lines():
        req = Requirement(text)
        (spec,) = req.specifier
        name = canonicalize_name(req.name)
        assert name not in pins, f"line {number}: {req.name} pinned twice"
        pins[name] = Version(spec.version)
    return pins


def test_every_pin_is_exact_and_says_why():
    lines = _pin_lines()
    assert lines
    for number, text, comment in lines:
        req = Requirement(text)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, (
            f"line {number}: {text!r} is not an exact pin (==X)")
        assert not req.extras and req.marker is None, f"line {number}: {text!r}"
        assert comment, f"line {number}: {text!r} needs a comment: the range it is the floor of"


@pytest.mark.parametrize("req", _declared(), ids=str)
def test_every_declared_lower_bound_is_pinned_exactly(req):
    pins = _pins()
    name = canonicalize_name(req.name)
    assert name in pins, f"{req} has no pin in {CONSTRAINTS.name}"
    pin = pins[name]
    for spec in req.specifier:
        if spec.operator in (">=", "=="):
            assert pin == Version(spec.version), (
                f"{req}: the floor lane installs {req.name}=={pin}, not its floor {spec.version}")
    assert req.specifier.contains(pin, prereleases=True), f"{req} excludes the pin {pin}"
    for extra in req.extras:  # psycopg[binary] brings psycopg-binary of the same version
        companion = canonicalize_name(f"{req.name}-{extra}")
        if companion in pins:
            assert pins[companion] == pin, f"{companion}=={pins[companion]} is not {pin}"


def test_every_declared_range_has_a_lower_bound():
    for req in _declared():
        assert any(s.operator in (">=", "==") for s in req.specifier), (
            f"{req}: a range with no floor cannot be tested at its floor")


def test_ci_runs_the_floor_lane_with_these_constraints():
    run = (ROOT / ".ci/run").read_text()
    assert '-c .ci/floor-constraints.txt -e ".[test]"' in run
    assert "torch==2.13.0 -c .ci/floor-constraints.txt" in run
    assert ".venv-floor/" in (ROOT / ".gitignore").read_text().split()
