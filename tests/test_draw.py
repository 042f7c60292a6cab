"""`mnist-estimators draw`: the JSON API on a real server (the command in a subprocess, on
127.0.0.1), the page in chromium, the registry's models, and the command's errors."""

import argparse
import contextlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import uvicorn
from PIL import Image, ImageDraw

from mnist_estimators import MLPClassifier, SoftmaxRegressionClassifier, draw, tracking
from mnist_estimators.data import preprocess_image
from mnist_estimators.persistence import save_model

from conftest import X_TRAIN, Y_TRAIN

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TINY = dict(max_epochs=3, batch_size=32, random_state=0, tracking=False)
# `mnist-estimators draw ARGS`, as a user runs it
COMMAND = [sys.executable, "-m", "mnist_estimators.cli"]
SEVEN = [(70, 60), (210, 60), (120, 240)]
ONE = [(150, 40), (140, 240)]


def drawing(strokes=(SEVEN,), fmt="PNG", mode="RGB", size=280, width=None):
    """Black strokes (width size/14 unless given, round ends) on white, or on transparent for
    mode RGBA."""
    image = Image.new(mode, (size, size), (255, 255, 255, 0) if mode == "RGBA" else "white")
    pen = ImageDraw.Draw(image)
    for line in strokes:
        pen.line(line, fill="black", width=width or size // 14, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def call(base, path, body=None, content_type="image/png"):
    """(status, JSON answer) of a GET, or of a POST when ``body`` is given."""
    headers = {"Content-Type": content_type} if body is not None else {}
    request = urllib.request.Request(base + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return [save_model(SoftmaxRegressionClassifier(**TINY).fit(X_TRAIN, Y_TRAIN), folder / "softmax.pkl"),
            save_model(MLPClassifier(**TINY, hidden_sizes=(32,)).fit(X_TRAIN, Y_TRAIN), folder / "mlp.pkl")]


def serve(models, root, *options):
    """`mnist-estimators draw` with ``models`` and ``options`` as a user starts it, on a free
    port; yields (URL, labelled folder)."""
    labelled = root / "labelled"
    env = {**os.environ, "MNIST_ESTIMATORS_TRACKING": "0", "MNIST_ESTIMATORS_CACHE": str(root / "cache")}
    proc = subprocess.Popen(
        [*COMMAND, "draw", "--model", str(models[0]), "--model", str(models[1]),
         "--port", "0", "--labelled-dir", str(labelled), *options],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("draw page: http://127.0.0.1:"), first + proc.stdout.read()
        assert str(labelled) in first and "softmax, mlp" in first
        url = first.split()[2].rstrip("/")
        assert call(url, "/api/counts")[0] == 200
        yield url, labelled
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    yield from serve(models, tmp_path_factory.mktemp("draw"))


# --------------------------------------------------------------------------- the API


@pytest.mark.parametrize("fmt, mode, content_type", [
    ("PNG", "RGB", "image/png"), ("JPEG", "RGB", "image/jpeg"),
    ("PNG", "RGBA", "image/png")])  # a canvas's export: black on transparent
def test_predict_answers_for_each_model(server, fmt, mode, content_type):
    url, _ = server
    status, answer = call(url, "/api/predict", drawing(fmt=fmt, mode=mode), content_type)
    assert status == 200, answer
    assert [p["model"] for p in answer["predictions"]] == ["softmax", "mlp"]
    for p in answer["predictions"]:
        assert len(p["probabilities"]) == 10
        assert sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert p["digit"] == int(np.argmax(p["probabilities"]))
    frame = np.array(answer["input"])
    assert frame.shape == (28, 28) and frame.min() >= 0 and frame.max() == 255
    np.testing.assert_array_equal(frame.reshape(-1), preprocess_image(
        Image.open(io.BytesIO(drawing(fmt=fmt, mode=mode)))))


def test_a_hairline_drawing_reaches_the_models_at_mnists_stroke_width(server):
    """A fine pen's 2 px line on the 280 px pad is a hairline in 28x28: the page normalises it
    as preprocess_image does, so the models see a stroke of MNIST's width."""
    from mnist_estimators import handwriting
    from mnist_estimators.data import ink_crop

    url, _ = server
    status, answer = call(url, "/api/predict", drawing(width=2))
    assert status == 200, answer
    frame = np.array(answer["input"], dtype=np.uint8)
    width = handwriting.stroke_width(handwriting.ink_core(ink_crop(frame)))
    assert width == pytest.approx(handwriting.MNIST_STROKE_WIDTH, abs=0.35)
    raw = preprocess_image(Image.open(io.BytesIO(drawing(width=2))), normalize_width=False)
    assert frame.sum() > 1.5 * raw.sum()


@pytest.mark.parametrize("turn", [None, "30"])
def test_a_page_started_with_turn_reads_unsure_drawings_turned(server, models, tmp_path, turn):
    from mnist_estimators import reading
    from mnist_estimators.persistence import load_model

    turned = Image.open(io.BytesIO(drawing())).rotate(25, fillcolor="white")
    body = io.BytesIO()
    turned.save(body, "PNG")
    status, default = call(server[0], "/api/predict", body.getvalue())  # started without --turn
    assert status == 200, default
    with contextlib.closing(serve(models, tmp_path, "--turn", "0")) as started:
        url, _ = next(started)
        status, upright = call(url, "/api/predict", body.getvalue())
    assert status == 200, upright
    answer = default
    if turn:
        with contextlib.closing(serve(models, tmp_path, "--turn", turn)) as started:
            url, _ = next(started)
            status, answer = call(url, "/api/predict", body.getvalue())
        assert status == 200, answer
    for path, p, q in zip(models, answer["predictions"], upright["predictions"]):
        model = load_model(path)
        np.testing.assert_allclose(p["probabilities"], reading.predict_proba(
            model, [turned], turn=float(turn or reading.TURN))[0], atol=1e-5)
        np.testing.assert_allclose(q["probabilities"], model.predict_proba(
            preprocess_image(turned)[None])[0], atol=1e-5)
        # the tiny models are unsure of it, and read it more confidently turned
        assert max(p["probabilities"]) > max(q["probabilities"])


def test_predict_with_chosen_models(server):
    url, _ = server
    status, answer = call(url, "/api/predict?models=mlp", drawing())
    assert status == 200 and [p["model"] for p in answer["predictions"]] == ["mlp"]
    status, answer = call(url, "/api/predict?models=mlp,nope", drawing())
    assert status == 400 and "unknown model 'nope'" in answer["detail"]
    assert "softmax, mlp" in answer["detail"]  # what there is to choose from


def test_oversize_bodies_are_refused(server):
    url, _ = server
    status, answer = call(url, "/api/predict", b"\x89PNG" + bytes(1_500_000))
    assert status == 413 and "too large (1,500,004 bytes)" in answer["detail"]
    # no Content-Length (chunked): the bytes read are counted, and a body of a few MB is read
    # to its end before the 413 (it got a connection reset at 2 MB)
    host, port = url.removeprefix("http://").split(":")
    for chunks in (20, 32, 64):  # 1.3, 2.1 and 4.2 MB
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("POST", "/api/predict", body=iter([bytes(65536)] * chunks),
                     headers={"Content-Type": "image/png"}, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413 and "over 1,000,000 bytes" in json.loads(resp.read())["detail"]
        conn.close()


@pytest.mark.parametrize("side", [5000, 13000, 20000])
def test_every_image_over_the_pixel_cap_gets_the_same_answer_from_its_header(server, side):
    # A few hundred bytes each (the pixels compress to nothing), decoding to gigabytes: refused
    # from the header alone, the same way, whether or not Pillow would call it a bomb.
    import zlib

    def chunk(kind, data):
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", side.to_bytes(4, "big") * 2 + b"\x08\x00\x00\x00\x00")
           + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    status, answer = call(server[0], "/api/predict", png)
    assert status == 413, answer
    assert answer["detail"] == f"the image is {side}x{side} pixels; at most 16,777,216 pixels are read"


def test_image_dimensions_reads_png_and_jpeg_headers(tmp_path):
    from PIL import Image

    from mnist_estimators.data import image_dimensions

    for fmt in ("PNG", "JPEG"):
        path = tmp_path / f"x.{fmt.lower()}"
        Image.new("L", (37, 21)).save(path, format=fmt)
        assert image_dimensions(path.read_bytes()[:4096]) == (37, 21)
    assert image_dimensions(b"GIF89a...") is None and image_dimensions(b"\x89PNG") is None


def _nodelay_of_an_accepted_connection(sock):
    """TCP_NODELAY, read from the kernel, of a connection that asyncio accepts on ``sock`` as
    uvicorn's ``run(sockets=...)`` does (``loop.create_server(sock=...)``)."""
    import asyncio

    async def accept_one():
        accepted = asyncio.get_running_loop().create_future()

        class Record(asyncio.Protocol):
            def connection_made(self, transport):
                conn = transport.get_extra_info("socket")
                accepted.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Record, sock=sock)
        async with server:
            host, port = sock.getsockname()[:2]
            _, writer = await asyncio.open_connection(host, port)
            nodelay = await asyncio.wait_for(accepted, 60)
            writer.close()
        return nodelay

    return asyncio.run(accept_one())


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_answers_come_without_a_nagle_stall(host):
    """The page's socket lets asyncio turn Nagle's algorithm off on every connection it accepts:
    with it on, each answer (headers, then body) waits for the client's delayed ACK, >= 40 ms on
    Linux. A listening socket made with proto 0, the control, leaves it on."""
    from mnist_estimators.draw import listen

    try:
        ours = listen(host, 0)
    except OSError as exc:
        pytest.skip(f"no {host} on this host: {exc}")
    assert _nodelay_of_an_accepted_connection(ours) != 0
    plain = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    plain.bind((host, 0))
    plain.listen(8)
    assert _nodelay_of_an_accepted_connection(plain) == 0


def test_what_is_not_a_drawing_is_refused(server):
    url, _ = server
    status, answer = call(url, "/api/predict", b"garbage, not an image")
    assert status == 400 and "not a PNG or JPEG image" in answer["detail"] and "garbage" in answer["detail"]
    status, answer = call(url, "/api/predict", drawing(), "text/plain")
    assert status == 415 and "got text/plain" in answer["detail"]
    status, answer = call(url, "/api/predict", drawing(fmt="GIF"))
    assert status == 415 and "GIF" in answer["detail"]
    status, answer = call(url, "/api/predict", drawing(strokes=()))  # white, no ink
    assert status == 422 and "no digit found" in answer["detail"]


def test_label_saves_the_drawing(server):
    url, labelled = server
    before = call(url, "/api/counts")[1]
    png = drawing()
    status, answer = call(url, "/api/label/7", png)
    assert status == 200, answer
    saved = labelled / answer["saved"]
    assert saved.parent == labelled / "7" and saved.suffix == ".png"
    assert saved.read_bytes() == png
    assert answer["counts"]["7"] == before["counts"]["7"] + 1
    assert answer["total"] == before["total"] + 1
    assert call(url, "/api/counts")[1] == {k: v for k, v in answer.items() if k != "saved"}
    assert not list(labelled.rglob("*.part"))  # atomic: no temporary file left


@pytest.mark.parametrize("path, status", [
    ("/api/label/11", 422), ("/api/label/a", 422), ("/api/label/-1", 422),
    ("/api/label/..%2F..%2Fx", 404), ("/api/label/%2E%2E", 422), ("/api/label/7%2F..%2F..%2Fx", 404)])
def test_label_outside_0_to_9_writes_nothing(server, path, status):
    url, labelled = server
    root = labelled.parent
    files = sorted(root.rglob("*"))
    got, answer = call(url, path, drawing())
    assert got == status, answer
    if status == 422:
        assert "the label must be one digit 0-9" in answer["detail"]
    assert sorted(root.rglob("*")) == files


def test_an_empty_drawing_is_not_saved(server):
    url, labelled = server
    before = sorted(labelled.rglob("*"))
    status, answer = call(url, "/api/label/3", drawing(strokes=()))
    assert status == 422 and "no digit found" in answer["detail"]
    status, answer = call(url, "/api/label/3", drawing(fmt="JPEG"), "image/jpeg")
    assert status == 415 and "image/png" in answer["detail"]
    assert sorted(labelled.rglob("*")) == before


def test_models_and_openapi(server):
    url, _ = server
    models = call(url, "/api/models")[1]["models"]
    assert [(m["name"], m["source"], m["default"]) for m in models] == [
        ("softmax", "command line", True), ("mlp", "command line", True)]
    spec = call(url, "/openapi.json")[1]
    assert {"/api/predict", "/api/label/{digit}", "/api/models", "/api/counts"} <= set(spec["paths"])
    assert "image/png" in spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    with urllib.request.urlopen(url + "/docs", timeout=30) as resp:
        assert resp.status == 200 and b"swagger" in resp.read().lower()


# --------------------------------------------------------------------------- the page


def _draw(page, strokes):
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 280
    for line in strokes:
        (x, y), *rest = line
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
        page.mouse.up()


def _shown(page):
    """{model: (digit shown, probabilities of its bars)} as the page shows them."""
    return page.eval_on_selector_all("#results .model", """cards => Object.fromEntries(cards.map(
        c => [c.dataset.model, [Number(c.querySelector('.digit').textContent),
                                [...c.querySelectorAll('.bar')].map(b => Number(b.dataset.p))]]))""")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed (.ci/run installs it)")
def test_page_in_a_browser(server):
    from playwright.sync_api import expect, sync_playwright

    url, labelled = server
    ARTIFACTS.mkdir(exist_ok=True)
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(url + "/")
            expect(page.locator("#picker input:checked")).to_have_count(2)
            expect(page.locator("#counts span")).to_have_count(10)
            cards = page.locator("#results .model")

            _draw(page, [ONE])  # a "1" with the mouse: both models answer while it is drawn
            expect(cards).to_have_count(2)
            shown = _shown(page)
            assert set(shown) == {"softmax", "mlp"}
            for digit, probabilities in shown.values():
                assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1, abs=1e-5)
                assert digit == int(np.argmax(probabilities))
            first, second = cards.nth(0).bounding_box(), cards.nth(1).bounding_box()
            assert second["x"] >= first["x"] + first["width"] and abs(second["y"] - first["y"]) < 5
            seen = page.eval_on_selector("#seen", "c => [...c.getContext('2d').getImageData("
                                         "0, 0, 28, 28).data].filter((v, i) => i % 4 == 0)")
            assert max(seen) == 255 and seen.count(0) > 28 * 28 / 2  # white ink on black

            page.click("#clear")
            expect(cards).to_have_count(0)
            _draw(page, [SEVEN])
            expect(cards).to_have_count(2)
            page.wait_for_timeout(400)  # the debounced request of the last stroke has answered
            page.screenshot(path=str(ARTIFACTS / "draw-page.png"))

            page.get_by_label("mlp").uncheck()  # the picker: one model, then both again
            expect(cards).to_have_count(1)
            expect(cards.first).to_have_attribute("data-model", "softmax")
            page.get_by_label("mlp").check()
            expect(cards).to_have_count(2)

            before = len(list((labelled / "7").glob("*.png")))
            page.get_by_role("button", name="that was a 7").click()
            expect(page.locator("#status")).to_contain_text("saved as 7/")
            saved = labelled / page.locator("#status").inner_text().removeprefix("saved as ")
            assert saved.is_file() and len(list((labelled / "7").glob("*.png"))) == before + 1
            with Image.open(saved) as png:
                assert png.format == "PNG" and png.size == (280, 280)
                assert preprocess_image(png).max() == 255  # the drawing, not a blank canvas
            expect(page.locator("#counts [data-digit='7']")).to_have_text(f"7: {before + 1}")
            expect(cards).to_have_count(0)  # cleared for the next drawing

            page.get_by_role("button", name="that was a 3").click()  # nothing drawn
            expect(page.locator("#error")).to_contain_text("draw a digit first")
            page.set_input_files("#file", files=[{"name": "photo.png", "mimeType": "image/png",
                                                  "buffer": b"\x89PNG" + bytes(1_200_000)}])
            expect(page.locator("#error")).to_be_visible()
            expect(page.locator("#error")).to_contain_text("413: the image is too large")
            page.screenshot(path=str(ARTIFACTS / "draw-page-error.png"))
        finally:
            browser.close()
    assert not errors, errors
    assert (ARTIFACTS / "draw-page.png").stat().st_size > 10_000


# --------------------------------------------------------------------------- registry and command


@pytest.mark.tracking
def test_registered_models_are_offered_and_loaded_on_first_use(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    est = SoftmaxRegressionClassifier(max_epochs=2, batch_size=32, random_state=0,
                                      tracking_options={"register_as": "draw-plain"})
    est.fit(X_TRAIN, Y_TRAIN)
    tracking.register(est.last_run_id_, "draw-champ", alias="champion")
    catalogue = draw.Catalogue()
    assert catalogue.refs == {"draw-plain/1": "models:/draw-plain/1",
                              "draw-champ@champion": "models:/draw-champ@champion"}
    assert catalogue.defaults == ["draw-champ@champion"] and not catalogue.loaded  # lazily
    frame = preprocess_image(Image.open(io.BytesIO(drawing())))
    (answer,) = draw.predict(catalogue, frame, ["draw-champ@champion"])
    np.testing.assert_allclose(answer["probabilities"], est.predict_proba(frame[None])[0], atol=1e-6)
    assert list(catalogue.loaded) == ["draw-champ@champion"]
    # named on the command line: loaded up front, and offered once
    named = draw.Catalogue(["models:/draw-champ@champion"])
    assert named.defaults == ["draw-champ@champion"] and len(named.refs) == 2


def test_a_failing_model_is_named(models):
    class Broken:
        classes_ = np.arange(10)

        def predict_proba(self, X):
            raise RuntimeError("out of memory")

    catalogue = draw.Catalogue(models, registry=False)
    catalogue.loaded["mlp"] = Broken()
    frame = preprocess_image(Image.open(io.BytesIO(drawing())))
    assert len(draw.predict(catalogue, frame, ["softmax"])) == 1
    with pytest.raises(draw.ModelError, match="model 'mlp' failed: RuntimeError: out of memory"):
        draw.predict(catalogue, frame, ["softmax", "mlp"])


def _args(tmp_path, *models, port=0):
    parser = argparse.ArgumentParser()
    draw.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["draw", *sum((["--model", str(m)] for m in models), []),
                              "--port", str(port), "--labelled-dir", str(tmp_path / "labelled")])


@pytest.fixture
def no_serving(monkeypatch):
    monkeypatch.setattr(uvicorn.Server, "run", lambda *a, **k: pytest.fail("the server started"))


def test_command_names_a_missing_or_broken_model_before_serving(tmp_path, models, no_serving):
    args = _args(tmp_path, models[0], tmp_path / "missing.pkl")
    assert args.func is draw.cmd_draw and args.host == "127.0.0.1"
    with pytest.raises(FileNotFoundError, match="missing.pkl does not exist"):
        draw.cmd_draw(args)
    (tmp_path / "broken.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="broken.pkl: not a saved model"):
        draw.cmd_draw(_args(tmp_path, tmp_path / "broken.pkl"))
    with pytest.raises(ValueError, match="no model to draw with"):
        draw.cmd_draw(_args(tmp_path))  # tracking is off here: no registry either
    assert not (tmp_path / "labelled").exists()


def test_command_names_a_port_in_use(tmp_path, models, no_serving):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            draw.cmd_draw(_args(tmp_path, models[0], port=port))


def test_page_is_served_whole_and_offline(server):
    url, _ = server
    with urllib.request.urlopen(url + "/", timeout=30) as resp:
        page = resp.read().decode()
    assert "<canvas" in page and "pointerdown" in page and "that was a" in page
    assert "http://" not in page and "https://" not in page  # no CDN: the machine may be offline


# --------------------------------------------------------------------------- on a network


def test_the_page_listens_on_this_machine_only_by_default():
    from mnist_estimators.cli import build_parser

    args = build_parser().parse_args(["draw", "--model", "m.pkl"])
    assert args.host == "127.0.0.1" and args.allow_remote is False
    assert draw._is_loopback("127.0.0.1") and draw._is_loopback("::1")
    assert draw._is_loopback("localhost") and not draw._is_loopback("0.0.0.0")


def test_another_host_is_refused_without_allow_remote(models, capsys):
    from mnist_estimators.cli import main

    assert main(["draw", "--model", str(models[0]), "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 listens where other machines can reach the page" in err
    assert "--allow-remote" in err and err.count("\n") == 1


def test_a_remote_page_writes_only_with_the_token_it_printed(models, tmp_path):
    env = {**os.environ, "MNIST_ESTIMATORS_TRACKING": "0"}
    proc = subprocess.Popen(
        [*COMMAND, "draw", "--model", str(models[0]), "--host", "0.0.0.0", "--allow-remote",
         "--port", "0", "--labelled-dir", str(tmp_path / "kept")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("draw page: http://0.0.0.0:"), first + proc.stderr.read()
        warning = proc.stderr.readline()
        assert warning.startswith("WARNING: listening on 0.0.0.0:") and "no encryption" in warning
        port = first.split()[2].rstrip("/").rsplit(":", 1)[1]
        token = warning.split("?token=")[1].split()[0]
        url = f"http://127.0.0.1:{port}"
        seven = drawing()

        def label(headers):
            request = urllib.request.Request(url + "/api/label/3", data=seven, headers={
                "Content-Type": "image/png", **headers})
            try:
                with urllib.request.urlopen(request, timeout=60) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        status, answer = label({})
        assert status == 401 and "needs its token" in answer["detail"]
        status, answer = label({"X-Draw-Token": token + "x"})
        assert status == 403 and "not this server's token" in answer["detail"]
        assert not (tmp_path / "kept").exists()  # nothing written by either
        status, answer = label({"X-Draw-Token": token})
        assert status == 200 and answer["counts"]["3"] == 1
        assert call(url, "/api/predict", seven)[0] == 200  # predicting needs no token
    finally:
        proc.terminate()
        proc.wait(timeout=30)
