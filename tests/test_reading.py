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
    assert np.array_equal(reading.predict_proba(mlp, images), upright)
    # every reading confident: nothing is read turned
    assert np.array_equal(reading.predict_proba(mlp, images, turn=20, confidence=1e-9), upright)


def test_an_unsure_reading_becomes_the_most_confident_turn(mlp):
    images = [turned_image(row, 20) for row in X_TEST[:20]]
    got = reading.predict_proba(mlp, images, turn=20, confidence=1.0)  # every reading unsure
    for img, row in zip(images, got):
        readings = mlp.predict_proba(np.stack(
            [preprocess_image(img, rotation=a) for a in [0, -20, -10, 10, 20]]))
        np.testing.assert_allclose(row, readings[readings.max(axis=1).argmax()], atol=1e-6)


def test_digits_turned_on_the_page_are_read_better(mlp):
    images = [turned_image(row, angle) for row, angle in
              zip(X_TEST, np.resize([-25, -15, 15, 25], len(X_TEST)))]
    upright = np.mean(mlp.classes_[reading.predict_proba(mlp, images).argmax(1)] == Y_TEST)
    turned = np.mean(mlp.classes_[reading.predict_proba(mlp, images, turn=20).argmax(1)] == Y_TEST)
    assert turned > upright + 0.02, (upright, turned)


def test_predict_turn_reads_images_turned_and_csv_rows_as_given(tmp_path, capsys, mlp):
    model = save_model(mlp, tmp_path / "mlp.pkl")
    paths = []
    for i, row in enumerate(X_TEST[:8]):
        paths.append(tmp_path / f"{i}.png")
        turned_image(row, 25).save(paths[-1])
    csv = tmp_path / "rows.csv"
    csv.write_text("".join(f"{y}," + ",".join(map(str, x)) + "\n"
                           for x, y in zip(X_TEST[:3], Y_TEST[:3])))
    assert main(["predict", str(model), *map(str, paths), "--csv", str(csv), "--turn", "20",
                 "--format", "json"]) == 0
    import json

    records = json.loads(capsys.readouterr().out)
    expected = reading.predict_proba(mlp, paths, turn=20)
    rows = mlp.predict_proba(X_TEST[:3])
    got = {r["file"]: (r["digit"], r["probability"]) for r in records}
    for path, p in zip(paths, expected):
        assert got[str(path)] == (int(mlp.classes_[p.argmax()]), round(float(p.max()), 4))
    for i, p in enumerate(rows):
        assert got[f"{csv}:{i + 1}"] == (int(mlp.classes_[p.argmax()]), round(float(p.max()), 4))


def test_evaluate_images_turn_reads_the_folder_as_predict_turn_does(tmp_path, capsys, mlp):
    from mnist_estimators.evaluation import evaluate_images

    folder = tmp_path / "turned"
    paths = []
    for i, (row, label) in enumerate(zip(X_TEST[:60], Y_TEST[:60])):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        paths.append(folder / str(label) / f"{i:03d}.png")
        turned_image(row, [-25, 25][i % 2]).save(paths[-1])
    upright = evaluate_images(mlp, folder, log=False)
    turned = evaluate_images(mlp, folder, log=False, turn=20)
    # the same readings predict --turn makes, file for file
    order = [str(p) for p in sorted(paths, key=lambda p: (p.parent.name, p.name))]
    assert turned.files == order
    expected = reading.predict_proba(mlp, order, turn=20)
    assert np.array_equal(turned.y_pred, mlp.classes_[expected.argmax(1)])
    assert turned.accuracy > upright.accuracy and turned.turn == 20.0
    assert "unsure ones also read turned up to 20 degrees" in turned.report()
    model = save_model(mlp, tmp_path / "mlp.pkl")
    assert main(["evaluate", str(model), "--images", str(folder), "--turn", "20"]) == 0
    assert capsys.readouterr().out.startswith(f"accuracy {turned.accuracy:.4f} on 60 images")
    # a bad turn is named before anything is read; --turn goes with image files only
    with pytest.raises(ValueError, match="turn must be a number of degrees from 0 to 90"):
        evaluate_images(mlp, tmp_path / "no such folder", turn=120)
    from sklearn.svm import LinearSVC

    svc = LinearSVC().fit(X_TRAIN[:300] / 255.0, Y_TRAIN[:300])
    with pytest.raises(ValueError, match="LinearSVC has no predict_proba; use turn=0"):
        evaluate_images(svc, tmp_path / "no such folder", log=False, turn=20)  # before reading
    assert main(["evaluate", str(model), "--turn", "20"]) == 2
    assert "--turn reads image files turned; it goes with --images" in capsys.readouterr().err
