import gzip
import hashlib
import http.server
import json
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_estimators import (
    ChecksumError,
    MNISTFormatError,
    download_mnist,
    load_mnist,
    read_idx,
    read_idx_folder,
    read_images,
    read_mnist_csv,
)
from mnist_estimators.data import FILES

from conftest import X_TRAIN, Y_TRAIN, write_idx, write_idx_folder


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_any_folder_in_idx_format_loads(tmp_path, gz):
    arrays = write_idx_folder(tmp_path, n_train=12, n_test=5, gz=gz)
    for subset in ("train", "test"):
        X, y = load_mnist(subset, data_home=tmp_path)
        assert X.dtype == np.uint8 and X.shape == (len(arrays[subset][0]), 784)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(X, arrays[subset][0])
        np.testing.assert_array_equal(y, arrays[subset][1])


def test_env_variable_and_shape_options(tmp_path, monkeypatch):
    arrays = write_idx_folder(tmp_path, n_train=6, n_test=4)
    monkeypatch.setenv("MNIST_ESTIMATORS_DATA", str(tmp_path))
    X, y, source = load_mnist("test", as_images=True, as_float=True, return_source=True)
    assert X.shape == (4, 28, 28) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() <= 1.0
    np.testing.assert_allclose(X.reshape(4, -1) * 255, arrays["test"][0], atol=1e-3)
    assert source["kind"] == "folder" and source["n"] == 4 and source["subset"] == "test"


def test_other_image_sizes_in_idx_format(tmp_path):
    write_idx_folder(tmp_path, n_train=3, n_test=2, side=16)
    X, _ = load_mnist("train", data_home=tmp_path)
    assert X.shape == (3, 256)


def test_wrong_magic_number(tmp_path):
    write_idx_folder(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    data = bytearray(gzip.decompress(bad.read_bytes()))
    data[0:4] = b"\x12\x34\x56\x78"
    bad.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(MNISTFormatError, match=r"train-images-idx3-ubyte\.gz: wrong magic number 12345678"):
        load_mnist("train", data_home=tmp_path)


def test_truncated_file(tmp_path):
    write_idx_folder(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MNISTFormatError, match=r"train-images-idx3-ubyte: truncated"):
        load_mnist("train", data_home=tmp_path)


def test_truncated_gzip_stream(tmp_path):
    write_idx_folder(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(MNISTFormatError, match=r"t10k-labels-idx1-ubyte\.gz"):
        load_mnist("test", data_home=tmp_path)


def test_image_and_label_counts_disagree(tmp_path):
    write_idx_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(29, dtype=np.uint8))
    with pytest.raises(MNISTFormatError, match=r"holds 30 images but .*train-labels-idx1-ubyte\.gz holds 29 labels"):
        load_mnist("train", data_home=tmp_path)


def test_label_outside_0_9(tmp_path):
    write_idx_folder(tmp_path)
    labels = np.zeros(10, dtype=np.uint8)
    labels[7] = 12
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(MNISTFormatError, match=r"label 12 at index 7 is outside 0-9"):
        load_mnist("test", data_home=tmp_path)


def test_missing_folder_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist"):
        load_mnist("train", data_home=tmp_path / "nowhere")
    write_idx_folder(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks t10k-images-idx3-ubyte"):
        load_mnist("test", data_home=tmp_path)


def test_bad_subset():
    with pytest.raises(ValueError, match=r"'subset' parameter must be 'train' or 'test'. Got 'valid'"):
        load_mnist("valid")


def test_read_idx_rejects_trailing_bytes(tmp_path):
    path = write_idx(tmp_path / "x-idx1-ubyte", np.arange(5, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    with pytest.raises(MNISTFormatError, match="2 unexpected bytes"):
        read_idx(path)


# --------------------------------------------------------------------------- full set


def test_full_mnist_matches_published_counts(full_mnist_dir):
    X, y = load_mnist("train", data_home=full_mnist_dir)
    Xt, yt = load_mnist("test", data_home=full_mnist_dir)
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784) and X.dtype == np.uint8
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --------------------------------------------------------------------------- sample fallback


def test_offline_falls_back_to_the_sample_with_a_warning():
    with pytest.warns(UserWarning, match="5,000-image MNIST sample"):
        X, y, source = load_mnist("train", download=False, return_source=True)
    with pytest.warns(UserWarning, match="not full MNIST"):
        Xt, yt = load_mnist("test", download=False)
    assert X.shape == (4000, 784) and Xt.shape == (1000, 784)
    assert source["kind"] == "sample"
    assert np.bincount(yt).tolist() == [100] * 10  # stratified
    # deterministic, and train/test are disjoint
    X2, _ = load_mnist("train", download=False)
    np.testing.assert_array_equal(X, X2)
    train_rows = {row.tobytes() for row in X}
    assert not any(row.tobytes() in train_rows for row in Xt)


# --------------------------------------------------------------------------- CSV


def _write_csv(path, X, y, header=False):
    lines = []
    if header:
        lines.append(",".join(["label"] + [f"pixel{i}" for i in range(X.shape[1])]))
    lines += [",".join(map(str, [label, *row])) for label, row in zip(y, X)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("header", [True, False])
def test_csv_with_and_without_header(tmp_path, header):
    path = _write_csv(tmp_path / "mnist_train.csv", X_TRAIN[:7], Y_TRAIN[:7], header=header)
    X, y = read_mnist_csv(path)
    assert X.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(X, X_TRAIN[:7])
    np.testing.assert_array_equal(y, Y_TRAIN[:7])


def test_csv_wrong_number_of_columns(tmp_path):
    path = _write_csv(tmp_path / "bad.csv", X_TRAIN[:3, :700], Y_TRAIN[:3])
    with pytest.raises(MNISTFormatError, match=r"bad\.csv: expected 785 columns .* got 701"):
        read_mnist_csv(path)


def test_csv_non_numeric_cell(tmp_path):
    path = _write_csv(tmp_path / "bad.csv", X_TRAIN[:3], Y_TRAIN[:3], header=True)
    lines = path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[10] = "abc"
    lines[2] = ",".join(cells)
    path.write_text("\n".join(lines))
    with pytest.raises(MNISTFormatError, match=r"bad\.csv: non-numeric cell 'abc' at line 3, column 11"):
        read_mnist_csv(path)


def test_csv_label_out_of_range_and_missing_file(tmp_path):
    path = _write_csv(tmp_path / "bad.csv", X_TRAIN[:3], [1, 10, 2])
    with pytest.raises(MNISTFormatError, match=r"label 10 at index 1 is outside 0-9"):
        read_mnist_csv(path)
    with pytest.raises(FileNotFoundError, match="missing.csv does not exist"):
        read_mnist_csv(tmp_path / "missing.csv")


# --------------------------------------------------------------------------- images


def _digit_png(path, digit_pixels, light_background, size=(64, 80), mode="L"):
    """Scale a 28x28 MNIST digit up to ``size`` and save it, black-on-white if asked."""
    img = Image.fromarray(digit_pixels.reshape(28, 28)).resize(size)
    if light_background:
        img = Image.fromarray(255 - np.asarray(img))
    img.convert(mode).save(path)
    return path


def test_image_folder_reads_inverts_and_resizes(tmp_path):
    digit = X_TRAIN[0]
    _digit_png(tmp_path / "a_dark.png", digit, light_background=False)
    _digit_png(tmp_path / "b_light.png", digit, light_background=True, mode="RGB")
    _digit_png(tmp_path / "c_light.jpg", digit, light_background=True)
    (tmp_path / "notes.txt").write_text("ignored")
    X, names = read_images(tmp_path)
    assert X.shape == (3, 784) and X.dtype == np.uint8
    assert [Path(n).name for n in names] == ["a_dark.png", "b_light.png", "c_light.jpg"]
    for row in X:
        img = row.reshape(28, 28).astype(float)
        assert img[0].max() == 0 and img[:, 0].max() == 0  # black border, like MNIST
        assert img.max() > 200  # white ink
    # light and dark versions of the same digit end up nearly the same
    assert np.abs(X[0].astype(int) - X[1].astype(int)).mean() < 10


def test_read_images_takes_a_mix_of_files_and_folders(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    _digit_png(folder / "b.png", X_TRAIN[1], light_background=True)
    _digit_png(folder / "a.jpg", X_TRAIN[2], light_background=True)
    loose = _digit_png(tmp_path / "loose.png", X_TRAIN[0], light_background=False)
    X, names = read_images([loose, folder])
    assert X.shape == (3, 784)
    assert names == [str(loose), str(folder / "a.jpg"), str(folder / "b.png")]
    X_folder, _ = read_images(folder)  # a folder alone, and one file alone, as before
    np.testing.assert_array_equal(X_folder, X[1:])
    np.testing.assert_array_equal(read_images(str(loose))[0], X[:1])


def test_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no"):
        read_images(tmp_path)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(MNISTFormatError, match=r"broken\.png: not a readable image"):
        read_images([bad])
    with pytest.raises(FileNotFoundError, match=r"ghost\.png does not exist"):
        read_images([tmp_path / "ghost.png"])


# --------------------------------------------------------------------------- download


class _Server:
    """An HTTP server on 127.0.0.1 serving {path: bytes}; 'truncate' paths die mid-file."""

    def __init__(self, files, truncate=()):
        files, truncate = dict(files), set(truncate)
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(h):  # noqa: N805
                self.requests.append(h.path)
                body = files.get(h.path)
                if body is None:
                    h.send_error(404)
                    return
                h.send_response(200)
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                if h.path in truncate:
                    h.wfile.write(body[: len(body) // 2])
                    h.wfile.flush()
                    h.close_connection = True
                    return
                h.wfile.write(body)

            def log_message(h, *args):  # noqa: N805
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _made_mnist_files(tmp_path):
    src = tmp_path / "src"
    arrays = write_idx_folder(src, n_train=20, n_test=8)
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    md5 = {name: hashlib.md5(body).hexdigest() for name, body in files.items()}
    return files, md5, arrays


def test_download_success_then_load_from_cache(tmp_path, monkeypatch):
    files, md5, arrays = _made_mnist_files(tmp_path)
    monkeypatch.setattr("mnist_estimators.data.MD5", md5)
    with _Server({f"/m/{n}": b for n, b in files.items()}) as server:
        X, y, source = load_mnist("train", mirrors=[server.url + "/m/"], return_source=True)
        assert source["kind"] == "download"
        np.testing.assert_array_equal(X, arrays["train"][0])
        assert len(server.requests) == 4
        # second call: from the cache, no request
        X2, _, source2 = load_mnist("test", mirrors=[server.url + "/m/"], return_source=True)
        assert source2["kind"] == "cache" and len(server.requests) == 4
        np.testing.assert_array_equal(X2, arrays["test"][0])


def test_corrupt_download_is_rejected_and_leaves_no_cache_entry(tmp_path):
    files, md5, _ = _made_mnist_files(tmp_path)
    corrupt = dict(files)
    name = "train-images-idx3-ubyte.gz"
    corrupt[name] = files[name][:-1] + bytes([files[name][-1] ^ 0xFF])
    dest = tmp_path / "cache"
    with _Server({f"/{n}": b for n, b in corrupt.items()}) as server:
        with pytest.raises(OSError, match=r"train-images-idx3-ubyte\.gz.*MD5"):
            download_mnist(dest, mirrors=[server.url], checksums=md5, progress=False)
    assert not (dest / name).exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no temp file left


def test_server_dying_mid_file_leaves_no_partial_file(tmp_path):
    files, md5, _ = _made_mnist_files(tmp_path)
    name = "t10k-images-idx3-ubyte.gz"
    dest = tmp_path / "cache"
    with _Server({f"/{n}": b for n, b in files.items()}, truncate={f"/{name}"}) as server:
        with pytest.raises(OSError, match=name):
            download_mnist(dest, mirrors=[server.url], checksums=md5, progress=False)
    assert not (dest / name).exists()
    assert not [p for p in dest.iterdir() if p.suffix == ".part"]
    # the files that did arrive are whole and verified
    for ok in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        assert hashlib.md5((dest / ok).read_bytes()).hexdigest() == md5[ok]


def test_mirror_fallback(tmp_path):
    files, md5, arrays = _made_mnist_files(tmp_path)
    bad = dict(files)
    bad["t10k-labels-idx1-ubyte.gz"] = b"garbage"
    with _Server({}) as empty, _Server({f"/{n}": b for n, b in bad.items()}) as corrupt, \
            _Server({f"/{n}": b for n, b in files.items()}) as good:
        dest = download_mnist(tmp_path / "cache", mirrors=[empty.url, corrupt.url, good.url],
                              checksums=md5, progress=False)
        assert len(empty.requests) == 4  # each file tried there first (404)
        assert good.requests == ["/t10k-labels-idx1-ubyte.gz"]  # only what the others lacked
    X, y = read_idx_folder(dest, "test")
    np.testing.assert_array_equal(y, arrays["test"][1])


def test_checksum_error_type(tmp_path):
    files, md5, _ = _made_mnist_files(tmp_path)
    from mnist_estimators.data import _fetch

    with _Server({"/f.gz": files["t10k-labels-idx1-ubyte.gz"]}) as server:
        with pytest.raises(ChecksumError, match="does not match"):
            _fetch(server.url + "/f.gz", tmp_path / "f.gz", "0" * 32, 10, False)
    assert not (tmp_path / "f.gz").exists()


def test_unreachable_mirrors_fall_back_to_sample_with_warnings(tmp_path):
    with _Server({}) as server, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        X, y, source = load_mnist("test", mirrors=[server.url], return_source=True)
    messages = [str(w.message) for w in caught]
    assert any("download failed" in m for m in messages)
    assert any("not full MNIST" in m for m in messages)
    assert source["kind"] == "sample" and X.shape == (1000, 784)


def test_standard_file_names():
    assert FILES["train"] == ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


# --------------------------------------------------------------------------- labelled image folders


def _drawn(folder, per_digit=2, seed=0):
    from mnist_estimators.strokes import make_set

    make_set(folder, per_digit=per_digit, seed=seed)
    return folder


def _blank_png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (60, 60), 255).save(path)
    return path


def test_load_images_from_digit_subfolders(tmp_path):
    from mnist_estimators import load_images
    from mnist_estimators.data import data_source

    folder = _drawn(tmp_path / "drawn")
    (folder / "notes").mkdir()  # other subfolders and files are not images of digits
    _blank_png(folder / "notes" / "x.png")
    (folder / "3" / "README.txt").write_text("ignored")
    X, y, files = load_images(folder, return_files=True)
    assert X.shape == (20, 784) and X.dtype == np.uint8 and y.dtype == np.int64
    assert y.tolist() == [d for d in range(10) for _ in range(2)]
    assert files[:3] == [str(folder / "0" / "000.png"), str(folder / "0" / "001.png"),
                         str(folder / "1" / "000.png")]
    np.testing.assert_array_equal(X, read_images(files)[0])  # preprocess_image, row for row
    assert data_source(X) == {"kind": "images", "path": str(folder.resolve()), "n": 20}
    assert data_source(y)["kind"] == "images"


@pytest.mark.parametrize("name, digit", [
    ("7_foo.png", 7), ("foo-7.png", 7), ("label7.png", 7), ("7.png", 7), ("scan_003-4.jpg", 4),
    ("Digit9.PNG", 9), ("me 2.png", 2), ("2024-01-05_8.png", 8), ("a.b.label_1.png", 1),
])
def test_image_label_reads_the_digit_token_of_a_file_name(name, digit):
    from mnist_estimators.data import image_label

    assert image_label(name) == digit


@pytest.mark.parametrize("name, message", [
    ("foo.png", "no label in the file name"), ("003.png", "no label in the file name"),
    ("seven_a7.png", "no label in the file name"), ("3_7.png", "ambiguous label"),
    ("label3-digit7.png", "ambiguous label"),
])
def test_image_label_refuses_names_without_one_digit(name, message):
    from mnist_estimators.data import image_label

    with pytest.raises(MNISTFormatError, match=f"{re.escape(name)}: {message}"):
        image_label(name)


def test_load_images_labelled_by_file_name(tmp_path):
    from mnist_estimators import load_images

    drawn = _drawn(tmp_path / "drawn", per_digit=1)
    flat = tmp_path / "flat"
    flat.mkdir()
    names = {"7_a.png": 7, "b-3.png": 3, "label5.png": 5, "x.digit0.png": 0}
    for name, digit in names.items():
        (flat / name).write_bytes((drawn / str(digit) / "000.png").read_bytes())
    X, y, files = load_images(flat, return_files=True)
    assert X.shape == (4, 784)
    assert dict(zip((Path(f).name for f in files), y.tolist())) == names
    np.testing.assert_array_equal(X[[Path(f).name for f in files].index("7_a.png")],
                                  load_images(drawn)[0][7])


def test_load_images_names_a_blank_or_unreadable_file_or_skips_it(tmp_path):
    from mnist_estimators import EmptyImageError, load_images

    folder = _drawn(tmp_path / "drawn")
    blank = _blank_png(folder / "3" / "blank.png")
    with pytest.raises(EmptyImageError, match=rf"{re.escape(str(blank))}: no digit found"):
        load_images(folder)
    broken = folder / "5" / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="skipped 2 file") as caught:
        X, y, files = load_images(folder, on_error="skip", return_files=True)
    message = str(caught[0].message)
    assert str(blank) in message and str(broken) in message and "not a readable image" in message
    assert X.shape == (20, 784) and str(blank) not in files and str(broken) not in files


def test_load_images_names_an_unlabelled_file(tmp_path):
    from mnist_estimators import load_images

    drawn = _drawn(tmp_path / "drawn", per_digit=1)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "4_ok.png").write_bytes((drawn / "4" / "000.png").read_bytes())
    (flat / "mystery.png").write_bytes((drawn / "6" / "000.png").read_bytes())
    with pytest.raises(MNISTFormatError, match=r"mystery\.png: no label in the file name"):
        load_images(flat)
    with pytest.warns(UserWarning, match=r"skipped 1 file.*mystery\.png \(no label"):
        X, y = load_images(flat, on_error="skip")
    assert y.tolist() == [4]


def test_load_images_folder_errors(tmp_path):
    from mnist_estimators import load_images

    with pytest.raises(FileNotFoundError, match="Image folder .*nowhere does not exist"):
        load_images(tmp_path / "nowhere")
    (tmp_path / "empty" / "3").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="empty holds no labelled images"):
        load_images(tmp_path / "empty")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        load_images(_blank_png(tmp_path / "1_x.png"))
    with pytest.raises(ValueError, match="'on_error' parameter must be 'raise' or 'skip'"):
        load_images(tmp_path / "empty", on_error="ignore")
    _blank_png(tmp_path / "blank" / "2" / "a.png")
    with pytest.warns(UserWarning), pytest.raises(MNISTFormatError, match="none of its 1 image"):
        load_images(tmp_path / "blank", on_error="skip")


@pytest.mark.tracking
def test_a_fit_on_load_images_is_tracked_with_its_images_source(tmp_path, monkeypatch):
    import mlflow

    from mnist_estimators import SoftmaxRegressionClassifier, load_images

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "images")
    folder = _drawn(tmp_path / "drawn")
    est = SoftmaxRegressionClassifier(max_epochs=2, random_state=0, tracking_options={
        "log_model": False, "figures": "none"}).fit(*load_images(folder))
    assert est.predict(X_TRAIN[:3]).shape == (3,)
    run = mlflow.MlflowClient().get_run(est.last_run_id_)
    assert run.info.status == "FINISHED"
    p = run.data.params
    assert p["data.source"] == "images" and p["data.shape"] == "(20, 784)"
    (ds,) = run.inputs.dataset_inputs
    assert ds.dataset.digest == run.data.tags["data.digest"]
    assert json.loads(ds.dataset.profile)["features_shape"] == [20, 784]
    assert ds.dataset.name == "images-drawn"  # named by its folder, and pointing at it
    assert json.loads(ds.dataset.source)["uri"].endswith("/drawn")
