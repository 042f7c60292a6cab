"""The documentation site: built with the README's own command (warnings are errors, the
gallery's examples run), served with the README's own command, and read in Chromium.

The build is the test of the examples: sphinx-gallery runs every ``examples/plot_*.py`` and
fails the build when one raises. Here they run on the real MNIST files
(``../shared/datasets/mnist``) when present, else on the offline sample ``load_mnist`` falls
back to.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FULL_MNIST

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"

# Public submodules whose ``__all__`` (or, without one, the names listed here) the API
# reference must cover, besides the package's own ``__all__``.
PUBLIC_MODULES = {
    "mnist_estimators.tracking": None,
    "mnist_estimators.search": ("tune", "suggest", "make_storage", "make_pruner", "TuneResult",
                                "PruningCallback", "TrialSeededTPESampler", "SurplusTrial"),
    "mnist_estimators.pipelines": ("get",),
    "mnist_estimators.strokes": ("draw_digit", "make_set", "read_factors"),
    "mnist_estimators.handwriting": ("normalize_width", "normalize_slant", "ink_core",
                                     "stroke_width", "softness", "skew", "skeleton", "redraw",
                                     "rotate", "mnist_statistics"),
    "mnist_estimators.reading": ("predict_proba", "turns"),
}


def docs_commands():
    """The two command lines of the README's "## Documentation" ```bash block: build, serve."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Documentation", 1)
    assert len(section) == 2, "README.md has no '## Documentation' section"
    block = re.search(r"```bash\n(.*?)\n```", section[1], re.S)
    assert block, "README.md's Documentation section has no ```bash block"
    lines = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    build, serve = [argv for argv in lines if argv]
    return build, serve


def test_the_readme_documents_the_build_and_serve_commands():
    build, serve = docs_commands()
    # build: install the docs extra, then sphinx-build with warnings as errors
    assert build[:4] == ["pip", "install", "-q", "-e"] and build[4] == ".[docs]" and build[5] == "&&"
    sphinx = build[6:]
    assert sphinx[0] == "sphinx-build" and "-W" in sphinx and sphinx[-2:] == ["docs", "docs/_build/html"]
    assert serve[:5] == ["python", "-m", "http.server", "--directory", sphinx[-1]]
    assert serve[5:] == ["8000"]


@pytest.fixture(scope="module")
def built_docs():
    """The site, built by the README's sphinx-build command, run as written (the pip part is
    what the test command itself installed)."""
    build, _ = docs_commands()
    sphinx = build[build.index("&&") + 1:]
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # tracked as a user's fits are (other tests turn tracking off), into examples/mlruns
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MNIST_ESTIMATORS_TRACKING", None)
    if (FULL_MNIST / "train-images-idx3-ubyte.gz").is_file():
        env["MNIST_ESTIMATORS_DATA"] = str(FULL_MNIST)
    start = time.perf_counter()
    proc = subprocess.run(sphinx, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    print(f"{shlex.join(sphinx)}: {time.perf_counter() - start:.1f} s")
    assert proc.returncode == 0, (
        f"{shlex.join(sphinx)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
        f"\n--- stderr\n{proc.stderr[-6000:]}")
    times = ROOT / "docs" / "sg_execution_times.rst"
    if times.is_file():  # how long the gallery took, for the log (no test asserts a time)
        print(re.findall(r"\*\*(\d\d:\d\d\.\d+)\*\* total execution time", times.read_text()))
    return ROOT / sphinx[-1]


def public_names():
    import mnist_estimators

    names = [f"mnist_estimators.{n}" for n in mnist_estimators.__all__ if not n.startswith("__")]
    for module, listed in PUBLIC_MODULES.items():
        mod = importlib.import_module(module)
        names += [f"{module}.{n}" for n in (listed or mod.__all__)]
    return names


def test_every_public_name_has_an_api_page(built_docs):
    generated = built_docs / "api" / "generated"
    missing = []
    for name in public_names():
        page = generated / f"{name}.html"
        if not page.is_file():
            # a name the package re-exports is documented where it is defined
            module, _, attr = name.rpartition(".")
            obj = getattr(importlib.import_module(module), attr)
            where = getattr(obj, "__module__", None)
            if not (where and (generated / f"{where}.{attr}.html").is_file()):
                missing.append(name)
    assert not missing, f"no page in docs/api.md for: {missing}"


def test_every_example_ran_and_left_its_output(built_docs):
    examples = sorted((ROOT / "examples").glob("plot_*.py"))
    assert len(examples) >= 5
    for example in examples:
        page = built_docs / "auto_examples" / f"{example.stem}.html"
        assert page.is_file(), f"{example.name} has no gallery page"
        html = page.read_text(encoding="utf-8")
        # sphinx-gallery shows an example's figures as sphx_glr_<name>_NNN.png, and its output
        assert re.search(rf"sphx_glr_{example.stem}_\d+\.png", html), f"{example.name} drew nothing"
        assert "sphx-glr-script-out" in html, f"{example.name} printed nothing"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed (.ci/run installs it)")
def test_the_served_site_renders_in_a_browser(built_docs):
    from playwright.sync_api import expect, sync_playwright

    from test_tracking_server import start_on_a_free_port, stop

    _, serve = docs_commands()
    # the README's command, on a free port
    server, port = start_on_a_free_port(lambda port: (
        [sys.executable] + serve[1:-1] + [str(port)], f"http://127.0.0.1:{port}/"), cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                # the API page of MLPClassifier: its signature, parameters and methods
                page.goto(f"{base}/api/generated/mnist_estimators.MLPClassifier.html")
                expect(page.locator("h1")).to_contain_text("MLPClassifier")
                expect(page.locator("dt.sig").first).to_contain_text("hidden_sizes")
                expect(page.get_by_text("Parameters").first).to_be_visible()
                expect(page.locator("dt[id='mnist_estimators.MLPClassifier.fit']")).to_be_attached()
                expect(page.locator("dt[id='mnist_estimators.MLPClassifier.predict_proba']")).to_be_attached()
                # the theme's stylesheet applied: the PyData navbar is laid out
                expect(page.locator("nav.bd-header, header.bd-header").first).to_be_visible()
                page.screenshot(path=str(ARTIFACTS / "docs-api-mlpclassifier.png"), full_page=False)

                # a gallery example: its code, its printed output and its figure, loaded
                page.goto(f"{base}/auto_examples/plot_first_fit.html")
                expect(page.locator("h1")).to_contain_text("A first fit")
                expect(page.locator(".sphx-glr-script-out").first).to_contain_text("test accuracy")
                figure = page.locator("img.sphx-glr-single-img, img.sphx-glr-multi-img").first
                expect(figure).to_be_visible()
                assert figure.evaluate("img => img.complete && img.naturalWidth > 100")
                page.screenshot(path=str(ARTIFACTS / "docs-gallery-first-fit.png"), full_page=False)
            finally:
                browser.close()
    finally:
        stop(server)
