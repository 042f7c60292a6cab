"""``mnist-estimators draw``: a page to draw digits on, see what each model predicts, and keep
corrected drawings as labelled PNGs.

    mnist-estimators draw [--model REF ...] [--host 127.0.0.1] [--port 8000]
                          [--labelled-dir drawings/] [--allow-remote]

REF is a model file saved by ``save_model`` or an MLflow URI (``models:/NAME@ALIAS``,
``models:/NAME/VERSION``, ``models:/m-...``, ``runs:/RUN_ID/PATH``). The page also offers the
models registered in the MLflow store (loaded on first use; none when tracking is off). Models
come only from the command line and the registry, never from a request.

The JSON API (documented at ``/docs``, schema at ``/openapi.json``):

- ``POST /api/predict[?models=a,b]``: a PNG or JPEG as the raw body -> each model's digit and
  probabilities, and the 28x28 frame the models saw;
- ``POST /api/label/{digit}``: a PNG as the raw body, saved as ``<labelled-dir>/<digit>/*.png``;
- ``GET /api/models``, ``GET /api/counts`` (drawings kept per digit).

It listens on 127.0.0.1 unless told otherwise. Any other address (``--host 0.0.0.0``: every
interface) needs ``--allow-remote``, and then the one endpoint that writes (``/api/label``) needs
the token printed at start, sent as the ``X-Draw-Token`` header; the page takes it from its own
address (``/?token=...``), the link the command prints.
"""

import argparse
import io
import logging
import re
import secrets
import socket
import sys
import threading
import warnings
from datetime import datetime
from pathlib import Path

from .persistence import atomic_write, load_model

MAX_BODY = 1_000_000  # bytes: a 280x280 drawing is ~10 kB, a phone photo is not a drawing
MAX_PIXELS = 4096 * 4096  # a small PNG can decode to gigabytes; refuse before decoding
DRAIN_LIMIT = 16 * 1024 * 1024  # a too-large body up to this is read before the 413 is sent
MLFLOW_SCHEMES = ("models:/", "runs:/")
FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG"}
PAGE = Path(__file__).with_name("static") / "draw.html"


def _image_body(*types):
    """OpenAPI for a raw image body (FastAPI only documents JSON and form bodies itself)."""
    schema = {"type": "string", "format": "binary"}
    return {"requestBody": {"required": True, "content": {t: {"schema": schema} for t in types}}}


# --------------------------------------------------------------------------- models


class Catalogue:
    """The models the page may use, by name: those named on the command line (loaded up front,
    so a bad one fails before the server starts) and the MLflow registry's (loaded on first use).

    ``defaults`` are the command line's models, else the first registered one.
    """

    def __init__(self, refs=(), registry=True):
        self.refs, self.sources, self.loaded = {}, {}, {}
        self._lock = threading.Lock()
        for ref in map(str, refs):
            name = _name(ref, self.refs)
            self.refs[name], self.sources[name] = ref, "command line"
            self.loaded[name] = _load(ref)
        self.defaults = list(self.refs)
        self.registry = registry
        self.refresh()
        if not self.defaults and self.refs:
            self.defaults = [next(iter(self.refs))]

    def refresh(self):
        """Add the models registered since the last look (a failing store only warns)."""
        if not self.registry:
            return
        try:
            found = registered_models()
        except Exception as exc:  # noqa: BLE001 - the page works without the registry
            warnings.warn(f"the MLflow registry is not listed: {type(exc).__name__}: {exc}")
            self.registry = False
            return
        known = set(self.refs.values())
        new = {_name(ref, self.refs): ref for ref in found if ref not in known}
        # new dicts, not updates: requests in other threads may be reading the old ones
        self.sources = {**self.sources, **dict.fromkeys(new, "registry")}
        self.refs = {**self.refs, **new}

    def select(self, names=None):
        """The names in a comma-separated ``names`` (default: ``defaults``); ``KeyError``
        naming an unknown one."""
        chosen = [n.strip() for n in names.split(",") if n.strip()] if names else self.defaults
        unknown = [n for n in chosen if n not in self.refs]
        if unknown or not chosen:
            raise KeyError(f"unknown model {unknown[0]!r}" if unknown else "no model chosen")
        return chosen

    def get(self, name):
        if name not in self.loaded:
            with self._lock:  # two requests must not load the same model twice
                if name not in self.loaded:
                    self.loaded[name] = _load(self.refs[name])
        return self.loaded[name]

    def describe(self):
        return [{"name": name, "ref": ref, "source": self.sources[name],
                 "loaded": name in self.loaded, "default": name in self.defaults}
                for name, ref in self.refs.items()]


def _name(ref, taken):
    """How the page names ``ref``: NAME@ALIAS for models:/NAME@ALIAS, cnn for a file cnn.pkl."""
    if ref.startswith("models:/"):
        return ref[len("models:/"):]
    return ref if ref.startswith(MLFLOW_SCHEMES) or Path(ref).stem in taken else Path(ref).stem


def _load(ref):
    if ref.startswith(MLFLOW_SCHEMES):
        import mlflow.sklearn

        try:
            model = mlflow.sklearn.load_model(ref)
        except Exception as exc:  # MlflowException, OSError, unpickling errors of all kinds
            raise ValueError(f"cannot load model {ref}: {type(exc).__name__}: {exc}") from exc
    else:
        model = load_model(ref)  # FileNotFoundError / ValueError naming the file
    if not hasattr(model, "predict_proba"):
        raise ValueError(f"{ref}: a {type(model).__name__} has no predict_proba(); the page "
                         "shows probabilities")
    return model


def registered_models():
    """``models:/NAME@ALIAS`` for each alias of each registered model (``models:/NAME/VERSION``
    of its latest version when it has none); [] when tracking is off or the store does not
    exist yet (listing it must not create it)."""
    from . import tracking
    from .tracking.store import sqlite_path

    if not tracking.is_enabled():
        return []
    uri, artifacts = tracking.resolve_uri()
    if sqlite_path(uri) is not None and not sqlite_path(uri).is_file():
        return []
    refs = []
    for model in tracking.open_store(uri, artifacts).search_registered_models():
        if model.aliases:
            refs += [f"models:/{model.name}@{alias}" for alias in sorted(model.aliases)]
        elif model.latest_versions:
            latest = max(int(v.version) for v in model.latest_versions)
            refs.append(f"models:/{model.name}/{latest}")
    return refs


class ModelError(RuntimeError):
    """A model failed to load or to predict; the message names it."""


def predict(catalogue, frame, names, image=None, turn=None):
    """Digit and the ten probabilities of each model in ``names`` for one (784,) frame, read
    from ``image``; a model unsure of it also reads it turned by up to ``turn`` degrees
    (``mnist_estimators.reading``; None: ``reading.TURN``, 0: upright only)."""
    import numpy as np

    from . import reading

    out, turned = [], {}  # the drawing's turned frames, framed once for all the models
    for name in names:
        try:
            model = catalogue.get(name)
            degrees = reading.default_turn(model, turn)
            if degrees and image is not None:
                proba = reading.predict_proba(model, [image], turn=degrees, frames=frame[None],
                                              turned_frames=turned, name="the drawing")[0]
            else:
                proba = model.predict_proba(frame[None])[0]
        except Exception as exc:
            raise ModelError(f"model {name!r} failed: {type(exc).__name__}: {exc}") from exc
        probabilities = np.zeros(10)
        probabilities[np.asarray(model.classes_, dtype=int)] = proba  # classes it never saw: 0
        out.append({"model": name, "digit": int(probabilities.argmax()),
                    "probabilities": probabilities.tolist()})
    return out


# --------------------------------------------------------------------------- labelled drawings


def counts(folder):
    """How many drawings ``folder`` holds per digit (PNG files in ``folder/0`` ... ``folder/9``)."""
    per_digit = {str(d): sum(1 for _ in Path(folder, str(d)).glob("*.png")) for d in range(10)}
    return {"counts": per_digit, "total": sum(per_digit.values()), "folder": str(folder)}


def save_drawing(folder, digit, png):
    """Write ``png`` as ``folder/<digit>/<timestamp>-<random>.png`` atomically; the path is made
    from the validated digit and a generated name only. Returns it relative to ``folder``."""
    name = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}.png"
    relative = Path(str(int(digit)), name)
    with atomic_write(Path(folder) / relative) as f:
        f.write(png)
    return relative.as_posix()


# --------------------------------------------------------------------------- the app


def create_app(catalogue, labelled_dir, write_token=None, turn=None):
    """The FastAPI app: the page at ``/``, the JSON API under ``/api``. With ``write_token``,
    ``/api/label`` answers 401 without an ``X-Draw-Token`` header and 403 with a wrong one.
    ``turn``: as ``predict --turn`` (``mnist_estimators.reading``; None: its default)."""
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi import Path as PathParam
    from fastapi.responses import HTMLResponse
    from PIL import Image, UnidentifiedImageError
    from pydantic import BaseModel
    from starlette.concurrency import run_in_threadpool

    from .data import EmptyImageError, MNISTFormatError, image_dimensions, preprocess_image

    labelled_dir = Path(labelled_dir).resolve()
    page = PAGE.read_text(encoding="utf-8")
    app = FastAPI(title="mnist-estimators draw",
                  description="Draw a digit, compare models, keep labelled drawings.")

    class Prediction(BaseModel):
        model: str
        digit: int
        probabilities: list[float]

    class PredictResponse(BaseModel):
        predictions: list[Prediction]
        input: list[list[int]]

    class Counts(BaseModel):
        counts: dict[str, int]
        total: int
        folder: str

    class Saved(Counts):
        saved: str

    async def read_image(request, types):
        """The raw body, checked (type, size, decodable) before any pixel work; (bytes, image)."""
        formats = " or ".join(FORMATS[t] for t in types)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in types:
            raise HTTPException(415, f"send a {formats} image as the raw body with Content-Type "
                                f"{' or '.join(types)}; got {kind or 'no Content-Type'}")
        try:
            length = int(request.headers.get("content-length", 0))
        except ValueError:
            raise HTTPException(400, "the Content-Length header is not a number") from None
        body, received = bytearray(), 0
        # A body too large is still read (and dropped) up to DRAIN_LIMIT before the answer: a
        # client that sends all of it before reading (urllib, requests) would otherwise get a
        # broken pipe or a connection reset, not the 413. A chunked body has no length: its
        # bytes are counted as they come.
        if length <= DRAIN_LIMIT:
            async for chunk in request.stream():
                received += len(chunk)
                if received <= MAX_BODY:
                    body += chunk
                elif received > DRAIN_LIMIT:
                    break
        if max(length, received) > MAX_BODY:
            size = f"{length:,} bytes" if length > MAX_BODY else f"over {MAX_BODY:,} bytes"
            raise HTTPException(413, f"the image is too large ({size}); the limit is 1 MB "
                                f"({MAX_BODY:,} bytes)")
        if not body:
            raise HTTPException(400, f"the request body is empty: send a {formats} image")
        size = image_dimensions(body[:65536])  # from the header: before Pillow decodes anything
        if size is not None and size[0] * size[1] > MAX_PIXELS:
            raise HTTPException(413, f"the image is {size[0]}x{size[1]} pixels; at most "
                                f"{MAX_PIXELS:,} pixels are read")
        try:
            image = Image.open(io.BytesIO(body))
            if image.format not in formats.split(" or "):
                raise HTTPException(415, f"the body is a {image.format} image; send {formats}")
            if image.width * image.height > MAX_PIXELS:  # a header this reader does not parse
                raise HTTPException(413, f"the image is {image.width}x{image.height} pixels; "
                                    f"at most {MAX_PIXELS:,} pixels are read")
            image.load()
        except UnidentifiedImageError:
            raise HTTPException(400, f"the body is not a {formats} image (it starts with "
                                f"{bytes(body[:16])!r})") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise HTTPException(400, f"the {formats} image cannot be read ({exc})") from None
        return bytes(body), image

    def frame_of(image):
        try:
            return preprocess_image(image, name="the drawing")
        except EmptyImageError as exc:
            raise HTTPException(422, str(exc)) from None
        except MNISTFormatError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return page

    @app.post("/api/predict", response_model=PredictResponse,
              openapi_extra=_image_body("image/png", "image/jpeg"),
              responses={413: {"description": "body over 1 MB"}, 415: {"description": "not PNG/JPEG"},
                         422: {"description": "no ink: nothing to predict"}})
    async def predict_image(request: Request, models: str | None = Query(
            None, description="comma-separated model names (default: the defaults of /api/models)")):
        """Each chosen model's digit and probabilities for a PNG or JPEG image sent as the raw
        body, and the 28x28 frame (0-255, white ink on black) the models saw."""
        try:
            names = catalogue.select(models)
        except KeyError as exc:
            raise HTTPException(400, f"{exc.args[0]}; available: {', '.join(catalogue.refs)}")
        _, image = await read_image(request, ["image/png", "image/jpeg"])

        def run():
            frame = frame_of(image)
            try:
                predictions = predict(catalogue, frame, names, image, turn)
            except ModelError as exc:
                logging.getLogger(__name__).exception("%s", exc)  # the traceback, on stderr
                raise HTTPException(500, str(exc)) from None
            return {"predictions": predictions, "input": frame.reshape(28, 28).tolist()}

        return await run_in_threadpool(run)

    @app.post("/api/label/{digit}", response_model=Saved, openapi_extra=_image_body("image/png"))
    async def label(request: Request, digit: str = PathParam(
            description="the digit the drawing shows, 0-9")):
        """Keep a PNG drawing as an example of ``digit`` in the labelled folder; returns its
        path (relative to the folder) and the new counts."""
        if write_token is not None:
            sent = request.headers.get("x-draw-token")
            if sent is None:
                raise HTTPException(401, "saving drawings on this server needs its token: open "
                                    "the page with the link the draw command printed")
            if not secrets.compare_digest(sent.encode(), write_token.encode()):
                raise HTTPException(403, "the X-Draw-Token header is not this server's token")
        if not re.fullmatch("[0-9]", digit):
            raise HTTPException(422, f"the label must be one digit 0-9; got {digit!r}")
        png, image = await read_image(request, ["image/png"])
        frame_of(image)  # an empty drawing is not an example of anything
        saved = await run_in_threadpool(save_drawing, labelled_dir, digit, png)
        return {"saved": saved, **counts(labelled_dir)}

    @app.get("/api/models")
    def list_models():
        """The models the page offers (command line, then registry) and which are the defaults."""
        catalogue.refresh()
        return {"models": catalogue.describe()}

    @app.get("/api/counts", response_model=Counts)
    def get_counts():
        """How many labelled drawings the folder holds per digit."""
        return counts(labelled_dir)

    return app


# --------------------------------------------------------------------------- the command


def add_parser(subparsers):
    """Add the ``draw`` subcommand to ``subparsers`` (of ``mnist-estimators``)."""
    p = subparsers.add_parser("draw", help="a page to draw digits, compare models' predictions "
                              "and keep labelled drawings")
    p.add_argument("--model", action="append", default=[], metavar="REF",
                   help="a saved model file or an MLflow URI (models:/NAME@ALIAS, "
                   "models:/NAME/VERSION, runs:/RUN_ID/PATH), repeatable; the page also offers "
                   "the registered models of the MLflow store")
    p.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only); "
                   "any other address needs --allow-remote")
    p.add_argument("--allow-remote", action="store_true",
                   help="listen on a --host other machines can reach: anyone who reaches it can "
                   "predict with the models; saving drawings then needs the token printed at start")
    p.add_argument("--port", type=int, default=8000, help="default: 8000; 0 picks a free port")
    p.add_argument("--labelled-dir", default="drawings", help="where 'that was a N' keeps "
                   "drawings, as DIR/N/*.png (default: drawings)")
    turn_argument(p)
    p.set_defaults(func=cmd_draw)
    return p


def turn_argument(parser):
    """``--turn DEGREES`` of ``predict`` and ``draw`` (``mnist_estimators.reading``), checked
    while the arguments are parsed, before anything heavy is imported."""

    def degrees(text):
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not 0 <= value <= 90:  # NaN fails the comparison too
            raise argparse.ArgumentTypeError(f"expected degrees from 0 to 90, got {text!r}")
        return value

    parser.add_argument("--turn", type=degrees, default=None, metavar="DEGREES",
                        help="also read an image the model is unsure of (below 0.9) turned by "
                        "up to DEGREES (0-90, steps of 10), keeping the most confident reading; "
                        "default 20 (upright only for a model without predict_proba); 0: "
                        "upright only")


def _is_loopback(host):
    """Is ``host`` an address (or name) of this machine only?"""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: whatever it resolves to
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def listen(host, port):
    """A listening TCP socket on ``host:port`` (port 0: any free one) for uvicorn to serve on.

    IPPROTO_TCP is named, not left 0: asyncio sets TCP_NODELAY on accepted connections only when
    their socket says so, and without it every answer waits ~40 ms (Nagle's algorithm meets the
    client's delayed ACK). An address that cannot be bound is an ``OSError`` naming it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise OSError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return sock


def cmd_draw(args):
    """Load the models, bind the port (errors before anything is served), then serve."""
    import torch
    import uvicorn

    remote = not _is_loopback(args.host)
    if remote and not args.allow_remote:
        raise ValueError(f"--host {args.host} listens where other machines can reach the page: "
                         "anyone on the network could predict with the models and write "
                         f"drawings into {Path(args.labelled_dir).resolve()}. Add --allow-remote "
                         "to do so (saving then needs a token), or use --host 127.0.0.1")
    catalogue = Catalogue(args.model)
    if not catalogue.refs:
        raise ValueError("no model to draw with: name one with --model FILE or --model "
                         "models:/NAME@ALIAS, or register one in the MLflow store")
    token = secrets.token_urlsafe(16) if remote else None
    app = create_app(catalogue, args.labelled_dir, write_token=token, turn=args.turn)
    sock = listen(args.host, args.port)  # connections wait from now on: the URL printed answers
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"draw page: http://{host}:{port}/  (models: {', '.join(catalogue.defaults)}; "
          f"{len(catalogue.refs)} offered; drawings kept in {Path(args.labelled_dir).resolve()}; "
          "Ctrl-C stops it)", flush=True)
    if token is not None:
        print(f"WARNING: listening on {args.host}:{port}, reachable from other machines, with no "
              "encryption: anyone who reaches it can use the page, the predictions API and its "
              "/docs. Saving drawings needs the token: open the page as "
              f"http://{host}:{port}/?token={token} (the token is sent as the X-Draw-Token "
              "header; keep it to those who may write drawings).", file=sys.stderr, flush=True)
    # One image per request: torch's intra-op threads would sync more than they compute, and on
    # a busy machine they spin against each other (2 busy CPUs: CNN p95 130 ms with 2, 16 with 1).
    torch.set_num_threads(1)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0
