"""Sphinx configuration of the mnist-estimators documentation.

Build (warnings are errors, as in CI; ``tests/test_docs.py`` runs this command from the README)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The site follows scikit-learn's: the PyData theme, numpydoc docstrings, an autosummary API
reference, and a sphinx-gallery of the scripts in ``examples/``, executed at every build.
Pages are MyST markdown, so that the README and the guide share one syntax (and
``tests/test_readme_examples.py`` runs the code blocks of both).
"""

import os
import re
import shutil
from pathlib import Path

import mnist_estimators

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

project = "mnist-estimators"
author = "the mnist-estimators developers"
copyright = "2026, the mnist-estimators developers"
release = version = mnist_estimators.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
# No intersphinx: the build must run offline (CI and this workspace reach only package
# registries), and an inventory that cannot be fetched is a warning, hence an error under -W.

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]
templates_path = ["_templates"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_typehints = "none"           # the numpydoc "Parameters" sections say the types
autodoc_default_options = {"member-order": "groupwise"}
numpydoc_show_class_members = False  # the class template lists the methods a user calls
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"mnist-estimators {version}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_static_path = []
html_show_sourcelink = False

# --- the gallery --------------------------------------------------------------------------
# Each example runs at every build on a slice of MNIST (seconds each, under 3 minutes in all:
# tests/test_docs.py times the build), so a broken example breaks the build. sphinx-gallery
# runs an example with examples/ as its working directory: the MLflow runs its fits log go to
# examples/mlruns (ignored by git), renewed at every build.
shutil.rmtree(ROOT / "examples" / "mlruns", ignore_errors=True)
os.environ.setdefault("MNIST_ESTIMATORS_TRACKING", "1")

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": str(DOCS / "auto_examples"),
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py|/_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": False,   # run them all, then fail the build naming each one
    "only_warn_on_example_error": False,
    "show_memory": False,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "capture_repr": ("_repr_html_", "__repr__"),
    "min_reported_time": 0,
    # "Examples using MLPClassifier" on each estimator's API page
    "doc_module": ("mnist_estimators",),
    "backreferences_dir": str(DOCS / "api" / "backreferences"),
    "inspect_global_variables": True,
}


# --- docstrings the estimators inherit from scikit-learn ------------------------------------
# ``score`` comes from scikit-learn, whose docstrings link into scikit-learn's own site
# (:ref:`accuracy_score`, :term:`meta-estimator`). Without intersphinx (offline, above) those
# links cannot resolve, so they are shown as text instead of failing the build.
_SKLEARN_ROLE = re.compile(r":(?:ref|term):`(?:([^`<]*?)\s*<[^`>]+>|([^`]+))`")


def _unlink_sklearn_roles(app, what, name, obj, options, lines):
    module = getattr(obj, "__module__", "") or ""
    if module.startswith("sklearn"):
        lines[:] = [_SKLEARN_ROLE.sub(lambda m: f"*{(m.group(1) or m.group(2)).strip()}*", line)
                    for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _unlink_sklearn_roles)
