"""Atomic writes and checksummed models: nothing half-written looks whole, nothing altered loads."""

import pickle

import numpy as np
import pytest

from mnist_estimators import MLPClassifier
from mnist_estimators.persistence import atomic_write, load_model, save_model, write_json

from conftest import X_TEST, X_TRAIN, Y_TRAIN


@pytest.fixture(scope="module")
def fitted():
    return MLPClassifier(max_epochs=1, hidden_sizes=(32,), random_state=0).fit(X_TRAIN, Y_TRAIN)


def test_a_saved_model_loads_with_plain_pickle_too(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m.pkl")
    with open(path, "rb") as f:
        np.testing.assert_array_equal(pickle.load(f).predict(X_TEST), fitted.predict(X_TEST))
    np.testing.assert_array_equal(load_model(path).predict(X_TEST), fitted.predict(X_TEST))


def test_a_model_with_bytes_overwritten_is_refused(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m.pkl")
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 64] = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"m\.pkl: the file is corrupt \(its SHA-256 does not match"):
        load_model(path)


def test_a_truncated_model_is_refused(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m.pkl")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"m\.pkl: not a saved model"):
        load_model(path)


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"accuracy": 0.99})
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target, "w") as f:
            f.write('{"accuracy": 0.')
            raise RuntimeError("boom")
    assert target.read_text().startswith('{\n  "accuracy": 0.99')
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


@pytest.mark.parametrize("content, kind", [
    (None, "a PNG image"),
    (b"\xff\xd8\xff\xe0" + bytes(100), "a JPEG image"),
    (b"", "an empty file"),
    (b"pixel0,pixel1\n0,255\n", "a text file"),
    (b'{"accuracy": 0.99}', "a JSON or other text file"),
    (b"PK\x03\x04" + bytes(100), "a zip archive"),
    (b"\x00\x00\x08\x03" + bytes(100), "an IDX image file"),
])
def test_a_file_that_is_not_a_model_is_named_for_what_it_is(tmp_path, content, kind):
    from PIL import Image

    path = tmp_path / "model.pkl"  # a file renamed .pkl
    if content is None:
        Image.new("L", (28, 28)).save(path, format="PNG")
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"model\.pkl: not a saved model: this is {kind}") as err:
        load_model(path)
    assert "\n" not in str(err.value) and "persistent id" not in str(err.value)
