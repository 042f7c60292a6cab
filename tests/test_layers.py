"""The package's floors and its freedom from import cycles (pyproject.toml's
``[tool.importlinter]`` contracts, docs/design.md), checked with import-linter as CI does."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")  # import-linter's command


def test_the_import_contracts_hold():
    done = subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_the_contracts_catch_an_upward_import(tmp_path):
    # the same contracts over a copy of the package in which the estimators import tracking
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "mnist_estimators", copy / "mnist_estimators",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    estimators = copy / "mnist_estimators" / "estimators.py"
    estimators.write_text(estimators.read_text() + "\n\ndef _up():\n    from . import tracking\n")
    done = subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=copy,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0
    assert "mnist_estimators.estimators is not allowed to import" in done.stdout
