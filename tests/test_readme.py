"""The README is the front door: its commands must be the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"```bash\n((?:\.ci/system-deps && )?python3 -m venv[^\n]+)\n```",
                      (ROOT / "README.md").read_text())


def test_readme_has_the_two_setup_commands():
    demo, tests = _readme_commands()[:2]
    assert demo.endswith("mnist-estimators demo") and "torch==2.13.0" in demo
    assert tests.endswith("pytest") and "torch==2.13.0" in tests and '".[test,docs]"' in tests


def test_ci_runs_the_readme_test_command_verbatim():
    tests = _readme_commands()[1]
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines()
                if line and not line.startswith("#")]
    assert tests in ci_lines


def test_generated_things_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    for pattern in ("mlruns/", "*.db", "models/", "*.pt", "*-ubyte.gz", ".venv/"):
        assert pattern in ignored
