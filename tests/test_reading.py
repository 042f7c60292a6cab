"""Reading images upright and turned: ``preprocess_image(rotation=...)``,
``mnist_estimators.reading`` and ``predict --turn``, with real fitted models."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_estimators import MLPClassifier, reading
from mnist_estimators.cli import main
from mnist_estimators.data import ink_crop, preprocess_image
from mnist_estimators.persistence import save_model

from conftest import X_TEST, X_TRAIN, Y_TEST, Y_TRAIN


@pytest.fixture(scope="module")
def mlp():
    return MLPClassifier(max_epochs=10, random_state=0, tracking=False).fit(X_TRAIN, Y_TRAIN)


def turned_image(row, degrees):
    """An MNIST digit as a 112 px image, dark ink on white paper, turned counter-clockwise."""
    img = Image.fromarray(255 - row.reshape(28, 28)).resize((112, 112), Image.Resampling.BILINEAR)
    return img.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=255)


def bar(degrees):
    """A vertical bar, a "1", turned counter-clockwise by ``degrees``."""
    img = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(img).line([(100, 30), (100, 170)], fill=0, width=14)
    return img.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=255)


def ink_width(frame):
    return ink_crop(frame.reshape(28, 28)).shape[1]


def test_rotation_turns_a_turned_digit_back_upright():
    turned = bar(30)
    assert ink_width(preprocess_image(turned, normalize_slant=False)) > 8
    back = preprocess_image(turned, normalize_slant=False, rotation=-30)
    assert ink_width(back) <= 4, back.reshape(28, 28)
    assert ink_width(preprocess_image(turned, normalize_slant=False, rotation=30)) > 10


def test_rotation_zero_is_the_upright_frame():
    img = turned_image(X_TEST[0], 0)
    assert np.array_equal(preprocess_image(img, rotation=0), preprocess_image(img))


@pytest.mark.parametrize("rotation", [float("nan"), float("inf"), "30", None])
def test_a_bad_rotation_is_named(rotation):
    with pytest.raises(ValueError, match="rotation must be a finite number of degrees"):
        preprocess_image(bar(0), rotation=rotation)


def test_preprocess_turns_frames_each_turn_as_preprocess_image_does():
    from mnist_estimators import preprocess_turns

    img = turned_image(X_TEST[3], 15)
    rotations = [0, -20, -10, 10, 20, 7.5]
    frames = preprocess_turns(img, rotations)
    assert frames.shape == (6, 784) and frames.dtype == np.uint8
    for frame, rotation in zip(frames, rotations):
        assert np.array_equal(frame, preprocess_image(img, rotation=rotation))
    plain = preprocess_turns(img, [0, 20], normalize_width=False, normalize_slant=False)
    assert np.array_equal(plain[1], preprocess_image(img, rotation=20, normalize_width=False,
                                                     normalize_slant=False))
    with pytest.raises(ValueError, match="rotation must be a finite number of degrees"):
        preprocess_turns(img, [10, float("nan")])


def test_turns_step_by_ten_degrees_each_way():
    assert reading.turns(20) == [-20, -10, 10, 20]
    assert reading.turns(25) == [-20, -10, 10, 20]
    assert reading.turns(0) == reading.turns(5) == []


@pytest.mark.parametrize("turn", [-10, 91, float("nan"), "20"])
def test_a_bad_turn_or_confidence_is_named(mlp, turn):
    with pytest.raises(ValueError, match="turn must be a number of degrees from 0 to 90"):
        reading.predict_proba(mlp, [bar(0)], turn=turn)
    with pytest.raises(ValueError, match=r"confidence must be a probability in \(0, 1\]"):
        reading.predict_proba(mlp, [bar(0)], turn=20, confidence=0)


def test_turn_zero_and_confident_readings_are_the_models_own(mlp):
    images = [turned_image(row, 20) for row in X_TEST[:20]]
    frames = np.stack([preprocess_image(img) for img in images])
    upright = mlp.predict_proba(frames)
    assert np.array_equal(reading.predict_proba(mlp, images, turn=0), upright)
    # every reading confident: nothing is read turned
    assert np.array_equal(reading.predict_proba(mlp, images, turn=20, confidence=1e-9), upright)


def test_images_are_read_turned_by_default(mlp, capsys):
    images = [turned_image(row, 20) for row in X_TEST[:20]]
    default = reading.predict_proba(mlp, images)
    assert reading.TURN == 20.0
    assert np.array_equal(default, reading.predict_proba(mlp, images, turn=20))
    # the command line's help names the same default (it is parsed before reading is imported)
    for command in ("predict", "evaluate", "draw"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"default {reading.TURN:g} " in " ".join(capsys.readouterr().out.split())
    # the MLP is unsure of some of these digits, so the default is not the upright reading
    assert not np.array_equal(default, reading.predict_proba(mlp, images, turn=0))
    # the default needs predict_proba: a model without it reads upright unless a turn is asked
    from sklearn.svm import LinearSVC

    svc = LinearSVC().fit(X_TRAIN[:300] / 255.0, Y_TRAIN[:300])
    assert reading.default_turn(svc) == 0.0 and reading.default_turn(mlp) == 20.0
    assert reading.default_turn(mlp, 0) == 0.0 and reading.default_turn(svc, 0) == 0.0
    with pytest.raises(ValueError, match="LinearSVC has no predict_proba; use turn=0"):
        reading.default_turn(svc, 10)


def test_an_unsure_reading_becomes_the_most_confident_turn(mlp):
    images = [turned_image(row, 20) for row in X_TEST[:20]]
    got = reading.predict_proba(mlp, images, turn=20, confidence=1.0)  # every reading unsure
    for img, row in zip(images, got):
        readings = mlp.predict_proba(np.stack(
            [preprocess_image(img, rotation=a) for a in [0, -20, -10, 10, 20]]))
        np.testing.assert_allclose(row, readings[readings.max(axis=1).argmax()], atol=1e-6)


def test_turned_frames_are_framed_once_for_several_models(mlp, monkeypatch):
    images = [turned_image(row, 20) for row in X_TEST[:10]]
    frames = np.stack([preprocess_image(img) for img in images])
    kept = {}
    first = reading.predict_proba(mlp, images, confidence=1.0, frames=frames, turned_frames=kept)
    assert sorted(kept) == sorted((i, a) for i in range(10) for a in reading.turns(20))
    assert np.array_equal(first, reading.predict_proba(mlp, images, confidence=1.0))
    # a second model's reading takes the kept frames: nothing is framed again
    calls = []
    for name in ("preprocess_image", "preprocess_turns"):
        monkeypatch.setattr(reading, name, lambda *a, **k: calls.append(a))
    other = MLPClassifier(max_epochs=2, random_state=1, tracking=False).fit(X_TRAIN, Y_TRAIN)
    got = reading.predict_proba(other, images, confidence=1.0, frames=frames, turned_frames=kept)
    assert calls == []
    monkeypatch.undo()
    assert np.array_equal(got, reading.predict_proba(other, images, confidence=1.0))


def test_digits_turned_on_the_page_are_read_better(mlp):
    images = [turned_image(row, angle) for row, angle in
              zip(X_TEST, np.resize([-25, -15, 15, 25], len(X_TEST)))]
    upright = np.mean(mlp.classes_[reading.predict_proba(mlp, images, turn=0).argmax(1)] == Y_TEST)
    turned = np.mean(mlp.classes_[reading.predict_proba(mlp, images).argmax(1)] == Y_TEST)
    assert turned > upright + 0.02, (upright, turned)


@pytest.mark.parametrize("turn", [None, "20", "0"])
def test_predict_turn_reads_images_turned_and_csv_rows_as_given(tmp_path, capsys, mlp, turn):
    model = save_model(mlp, tmp_path / "mlp.pkl")
    paths = []
    for i, row in enumerate(X_TEST[:8]):
        paths.append(tmp_path / f"{i}.png")
        turned_image(row, 25).save(paths[-1])
    csv = tmp_path / "rows.csv"
    csv.write_text("".join(f"{y}," + ",".join(map(str, x)) + "\n"
                           for x, y in zip(X_TEST[:3], Y_TEST[:3])))
    assert main(["predict", str(model), *map(str, paths), "--csv", str(csv), "--format", "json",
                 *(["--turn", turn] if turn else [])]) == 0
    import json

    records = json.loads(capsys.readouterr().out)
    expected = reading.predict_proba(mlp, paths, turn=20 if turn is None else float(turn))
    assert turn == "0" or not np.array_equal(expected, reading.predict_proba(mlp, paths, turn=0))
    rows = mlp.predict_proba(X_TEST[:3])
    got = {r["file"]: (r["digit"], r["probability"]) for r in records}
    for path, p in zip(paths, expected):
        assert got[str(path)] == (int(mlp.classes_[p.argmax()]), round(float(p.max()), 4))
    for i, p in enumerate(rows):
        assert got[f"{csv}:{i + 1}"] == (int(mlp.classes_[p.argmax()]), round(float(p.max()), 4))


def test_predict_reads_upright_with_a_model_without_predict_proba(tmp_path, capsys):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.svm import LinearSVC

    from mnist_estimators.data import scale_pixels

    svc = make_pipeline(FunctionTransformer(scale_pixels), LinearSVC())
    svc.fit(X_TRAIN[:300], Y_TRAIN[:300])
    model = save_model(svc, tmp_path / "svc.pkl")
    path = tmp_path / "a.png"
    turned_image(X_TEST[0], 25).save(path)
    assert main(["predict", str(model), str(path)]) == 0
    digit = int(svc.predict(preprocess_image(path)[None])[0])
    assert capsys.readouterr().out.split() == [str(path), str(digit), "-"]
    assert main(["predict", str(model), str(path), "--turn", "20"]) == 2
    assert "Pipeline has no predict_proba; use --turn 0" in capsys.readouterr().err


def test_evaluate_images_turn_reads_the_folder_as_predict_turn_does(tmp_path, capsys, mlp):
    from mnist_estimators.evaluation import evaluate_images

    folder = tmp_path / "turned"
    paths = []
    for i, (row, label) in enumerate(zip(X_TEST[:60], Y_TEST[:60])):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        paths.append(folder / str(label) / f"{i:03d}.png")
        turned_image(row, [-25, 25][i % 2]).save(paths[-1])
    upright = evaluate_images(mlp, folder, log=False, turn=0)
    turned = evaluate_images(mlp, folder, log=False)  # turn=20, the default
    # the same readings predict --turn makes, file for file
    order = [str(p) for p in sorted(paths, key=lambda p: (p.parent.name, p.name))]
    assert turned.files == order
    expected = reading.predict_proba(mlp, order, turn=20)
    assert np.array_equal(turned.y_pred, mlp.classes_[expected.argmax(1)])
    assert turned.accuracy > upright.accuracy and turned.turn == 20.0
    assert "unsure ones also read turned up to 20 degrees" in turned.report()
    model = save_model(mlp, tmp_path / "mlp.pkl")
    assert main(["evaluate", str(model), "--images", str(folder)]) == 0
    assert capsys.readouterr().out.startswith(f"accuracy {turned.accuracy:.4f} on 60 images")
    assert main(["evaluate", str(model), "--images", str(folder), "--turn", "0"]) == 0
    assert capsys.readouterr().out.startswith(f"accuracy {upright.accuracy:.4f} on 60 images")
    assert upright.turn == 0.0 and "read turned" not in upright.report()
    # a bad turn is named before anything is read; --turn goes with image files only
    with pytest.raises(ValueError, match="turn must be a number of degrees from 0 to 90"):
        evaluate_images(mlp, tmp_path / "no such folder", turn=120)
    from sklearn.svm import LinearSVC

    svc = LinearSVC().fit(X_TRAIN[:300] / 255.0, Y_TRAIN[:300])
    with pytest.raises(ValueError, match="LinearSVC has no predict_proba; use turn=0"):
        evaluate_images(svc, tmp_path / "no such folder", log=False, turn=20)  # before reading
    with pytest.raises(FileNotFoundError):  # by default, a model without one reads upright
        evaluate_images(svc, tmp_path / "no such folder", log=False)
    assert main(["evaluate", str(model), "--turn", "20"]) == 2
    assert "--turn reads image files turned; it goes with --images" in capsys.readouterr().err
