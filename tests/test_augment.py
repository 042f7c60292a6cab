"""Training-time augmentation: batched transforms, training-only, seeded, searchable."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Callback
from skorch.dataset import Dataset

from mnist_estimators import CNNClassifier, MLPClassifier, SoftmaxRegressionClassifier
from mnist_estimators.training import Augment, AugmentedBatches, TensorBatchIterator, gaussian_blur

from conftest import X_TEST, X_TRAIN, Y_TRAIN

IMAGES = torch.from_numpy(X_TRAIN[:64].astype(np.float32) / 255)  # (64, 784) digits in [0, 1]
ALL = dict(rotation=15.0, scale=0.15, shift=3.0, slant=0.3, blur=1.0, thickness=0.5, gaps=3,
           erasing=0.5, elastic=34.0)


def augment(seed=0, **params):
    return Augment(**params, generator=torch.Generator().manual_seed(seed))


class AtFraction(Augment):
    """Every random draw U(low, high) fixed at low + frac * (high - low): exact semantics."""

    def __init__(self, frac, **params):
        super().__init__(**params)
        self.frac = frac

    def _uniform(self, low, high, *shape, device):
        return torch.full(shape, low + self.frac * (high - low), device=device)


def vertical_line(width=1):
    img = torch.zeros(1, 28, 28)
    img[0, 4:24, 13:13 + width] = 1.0  # rows 4-23: symmetric about the centre row 13.5
    return img.reshape(1, 784)


def centre_of_mass(X):
    img = X.reshape(-1, 28, 28)
    pos = torch.arange(28, dtype=torch.float32)
    mass = img.sum((1, 2))
    return (img.sum(2) @ pos) / mass, (img.sum(1) @ pos) / mass  # rows, cols


def test_no_transform_is_inactive_and_every_one_is_active():
    assert not Augment().active
    for name, value in ALL.items():
        assert Augment(**{name: value}).active, name


@pytest.mark.parametrize("name", list(ALL))
def test_each_transform_changes_images_per_image(name):
    out = augment(**{name: ALL[name]})(IMAGES)
    assert out.shape == IMAGES.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6  # stays an image in [0, 1]
    changed = (out - IMAGES).abs().amax(1) > 1e-3
    if name == "erasing":  # p = 0.5: about half the images, never all or none
        assert 10 < changed.sum() < 54
    elif name == "blur":  # sigma ~ U(0, 1): below ~0.3 the kernel is all but a delta
        assert changed.sum() > 32
    elif name == "gaps":  # k ~ U{0..3} breaks: a quarter of the images get none
        assert 32 < changed.sum() < 64
    else:
        assert changed.all()
    # Per-image parameters: the same digit 32 times comes out 32 different ways.
    same = IMAGES[:1].repeat(32, 1)
    out = augment(**{name: ALL[name]})(same)
    assert len({tuple(row.round(decimals=4).tolist()) for row in out}) > 16


def test_shift_moves_the_digit_by_at_most_shift_pixels():
    rows0, cols0 = centre_of_mass(IMAGES)
    rows, cols = centre_of_mass(augment(shift=3.0)(IMAGES))
    drow, dcol = rows - rows0, cols - cols0
    assert drow.abs().max() <= 3.05 and dcol.abs().max() <= 3.05
    assert drow.abs().max() > 1.5 and dcol.abs().max() > 1.5  # the range is used
    assert abs(drow.mean()) < 0.75  # and it is symmetric


def test_scale_zooms_in_and_out():
    ink = IMAGES.sum(1)
    ratio = augment(scale=0.3)(IMAGES).sum(1) / ink  # ink grows as the square of the zoom
    assert ratio.min() < 0.8 and ratio.max() > 1.2
    assert ratio.min() > 0.7 ** 2 - 0.05 and ratio.max() < 1.3 ** 2 + 0.05


def test_rotation_keeps_ink_and_centre():
    out = augment(rotation=30.0)(IMAGES)
    assert torch.allclose(out.sum(1), IMAGES.sum(1), rtol=0.08)
    rows0, cols0 = centre_of_mass(IMAGES)
    rows, cols = centre_of_mass(out)
    # about the image centre (13.5, 13.5): the distance to it is kept
    d0 = ((rows0 - 13.5) ** 2 + (cols0 - 13.5) ** 2).sqrt()
    d = ((rows - 13.5) ** 2 + (cols - 13.5) ** 2).sqrt()
    assert (d - d0).abs().max() < 0.6


def test_blur_spreads_ink_and_sigma_zero_is_identity():
    out = augment(blur=2.0)(IMAGES)
    assert torch.allclose(out.sum(1), IMAGES.sum(1), rtol=0.02)  # digits sit inside the frame
    assert (out.amax(1) <= IMAGES.amax(1) + 1e-6).all()
    img = IMAGES[:4].reshape(4, 1, 28, 28)
    assert torch.allclose(gaussian_blur(img, torch.zeros(4), radius=3), img, atol=1e-6)


def test_erasing_blanks_one_rectangle_of_2_to_20_percent():
    ones = torch.ones(200, 784)
    out = augment(erasing=1.0)(ones)
    erased = (out == 0).reshape(200, 28, 28)
    share = erased.float().mean((1, 2))
    assert (share > 0).all() and share.max() <= 0.21 and share.min() >= 0.01
    for mask in erased[:20]:  # a rectangle: its rows times its columns
        rows, cols = mask.any(1), mask.any(0)
        assert mask.sum() == rows.sum() * cols.sum()


def test_gaps_cut_strokes_across_where_the_ink_is():
    lines = vertical_line(width=2).repeat(200, 1)  # rows 4-23, columns 13-14
    out = AtFraction(1.0, gaps=1)(lines)  # one break each, radius 1.5
    assert torch.all(out <= lines)  # only ever removes ink
    lost = (lines - out).sum(1)
    assert (lost > 0).all() and lost.max() <= 2 * 6  # the disc crosses the 2-pixel stroke
    column = out.reshape(200, 28, 28)[:, :, 13:15].amax(2)  # (200, 28) ink per row
    blank_inside = (column[:, 5:23] == 0).any(1)  # a row of the stroke's middle emptied
    assert blank_inside.float().mean() > 0.7  # most breaks land inside, not at a tip
    # k ~ U{0..gaps}: with gaps=3, as many images get 0, 1, 2 and 3 breaks
    lost = (IMAGES.repeat(8, 1) - augment(gaps=3)(IMAGES.repeat(8, 1))).sum(1)
    assert 0.15 < (lost == 0).float().mean() < 0.35


def test_elastic_distorts_locally_and_keeps_the_digit():
    out = augment(elastic=34.0, elastic_sigma=4.0)(IMAGES)
    ink = out.sum(1) / IMAGES.sum(1)  # strokes stretch and shrink locally, on average neither
    assert 0.5 < ink.min() and ink.max() < 1.5 and abs(ink.mean() - 1) < 0.1
    rows0, cols0 = centre_of_mass(IMAGES)
    rows, cols = centre_of_mass(out)
    assert (rows - rows0).abs().max() < 3 and (cols - cols0).abs().max() < 3
    assert (out - IMAGES).abs().sum(1).min() > 5  # every image really moved


def test_thickness_thickens_and_thins_strokes_by_3x3_steps():
    line = vertical_line()
    ink = line.sum()  # 20 pixels
    # t = +1: one full dilation, 1 px -> 3 px wide (and a row longer at each end);
    # t = -1: one full erosion takes the 1-px line away; the fraction of a step blends.
    assert AtFraction(1.0, thickness=1.0)(line).sum() == 3 * 22
    assert AtFraction(0.0, thickness=1.0)(line).sum() == 0
    assert torch.isclose(AtFraction(0.75, thickness=1.0)(line).sum(), ink + 0.5 * (66 - ink))
    wide = vertical_line(width=5)  # two erosions: 5 px -> 1 px wide, 20 -> 16 rows
    assert AtFraction(0.0, thickness=2.0)(wide).sum() == 16
    assert AtFraction(1.0, thickness=2.0)(line).sum() == 5 * 24  # two dilations: 5 px wide
    # Drawn per image from U(-thickness, thickness): both signs in one batch.
    out = augment(thickness=1.0)(line.repeat(32, 1))
    assert (out.sum(1) > ink + 1).sum() > 8 and (out.sum(1) < ink - 1).sum() > 8
    assert out.min() >= 0 and out.max() <= 1


def test_thickness_keeps_blank_images_blank_and_erodes_at_the_border():
    assert torch.equal(augment(thickness=2.0)(torch.zeros(8, 784)), torch.zeros(8, 784))
    ones = torch.ones(1, 784)  # outside the frame is background: erosion eats the edge
    eroded = AtFraction(0.0, thickness=1.0)(ones).reshape(28, 28)
    assert eroded[1:-1, 1:-1].eq(1).all() and eroded.sum() == 26 * 26


def test_slant_shears_rows_about_the_centre():
    pos = torch.arange(28, dtype=torch.float32)
    row_offset = pos[4:24] - 13.5
    for frac, s in [(1.0, 0.4), (0.0, -0.4), (0.5, 0.0)]:
        out = AtFraction(frac, slant=0.4)(vertical_line()).reshape(28, 28)[4:24]
        cols = (out @ pos) / out.sum(1)  # each row's centre of mass
        # x' = x + s * y: row r moves by s * (r - 13.5); the centre stays, the ink is kept
        torch.testing.assert_close(cols, 13 + s * row_offset, atol=1e-4, rtol=0)
        torch.testing.assert_close(out.sum(1), torch.ones(20), atol=1e-5, rtol=0)
    # Random slants: top and bottom rows lean opposite ways, the centre of mass stays put.
    out = augment(slant=0.4)(vertical_line().repeat(32, 1)).reshape(32, 28, 28)
    top = (out[:, 4:8] @ pos).sum(1) / out[:, 4:8].sum((1, 2)) - 13
    bottom = (out[:, 20:24] @ pos).sum(1) / out[:, 20:24].sum((1, 2)) - 13
    assert (top * bottom < 0).all() and top.abs().max() > 2
    torch.testing.assert_close(top, -bottom, atol=1e-4, rtol=0)
    _, cols = centre_of_mass(out.reshape(32, 784))
    torch.testing.assert_close(cols, torch.full((32,), 13.0), atol=1e-4, rtol=0)


def test_slant_comes_first_in_the_one_affine_map():
    # One grid_sample of slant + rotation equals the slant, then the rotation (90 degrees maps
    # pixel centres onto pixel centres, so the second resampling is exact).
    line = vertical_line()
    both = AtFraction(1.0, slant=0.4, rotation=90.0)(line)
    one_by_one = AtFraction(1.0, rotation=90.0)(AtFraction(1.0, slant=0.4)(line))
    torch.testing.assert_close(both, one_by_one, atol=1e-5, rtol=0)
    zoomed = AtFraction(1.0, slant=0.4, scale=0.5)(line)  # zoom 1.5 of the slanted line
    assert not torch.allclose(zoomed, AtFraction(1.0, slant=0.4)(line), atol=1e-3)


def test_same_generator_seed_same_batch():
    assert torch.equal(augment(7, **ALL)(IMAGES), augment(7, **ALL)(IMAGES))
    assert not torch.equal(augment(7, **ALL)(IMAGES), augment(8, **ALL)(IMAGES))


@pytest.mark.parametrize("name, value, match", [
    ("rotation", -1.0, "'augment_rotation' parameter must be a float >= 0. Got -1.0"),
    ("scale", 1.0, "'augment_scale' parameter must be < 1"),
    ("erasing", 1.5, "'augment_erasing' parameter is a probability"),
    ("blur", float("nan"), "'augment_blur' parameter must be a float >= 0"),
    ("shift", "2", "'augment_shift' parameter must be a float >= 0. Got '2'"),
    ("slant", -0.3, "'augment_slant' parameter must be a float >= 0. Got -0.3"),
    ("slant", float("inf"), "'augment_slant' parameter must be a float >= 0"),
    ("thickness", -0.5, "'augment_thickness' parameter must be a float >= 0. Got -0.5"),
    ("thickness", 2.5, "'augment_thickness' parameter must be <= 2.0 .*Got 2.5"),
    ("gaps", -1, r"'augment_gaps' parameter must be an int in \[0, 8\] .*Got -1"),
    ("gaps", 2.5, r"'augment_gaps' parameter must be an int in \[0, 8\] .*Got 2.5"),
    ("gaps", 9, r"'augment_gaps' parameter must be an int in \[0, 8\] .*Got 9"),
])
def test_bad_augment_params_are_named(name, value, match):
    with pytest.raises(ValueError, match=match):
        Augment(**{name: value})
    with pytest.raises(ValueError, match="MLPClassifier: The " + match):
        MLPClassifier(max_epochs=1, **{f"augment_{name}": value}).fit(X_TRAIN[:50], Y_TRAIN[:50])


def test_non_square_features_are_a_clear_error():
    X = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    y = np.arange(40) % 2
    with pytest.raises(ValueError, match="augmentation needs square images, but X has 30 features"):
        MLPClassifier(max_epochs=1, augment_shift=1.0).fit(X, y)


class RecordBatches(Callback):
    def initialize(self):
        self.train, self.valid = [], []
        return self

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        (self.train if training else self.valid).append(batch[0].clone())


def rows_of(X):
    return {tuple(r) for r in X.numpy().round(5).tolist()}


def test_augmentation_is_training_only():
    rec = RecordBatches()
    net = MLPClassifier(max_epochs=2, random_state=0, augment_elastic=34.0, augment_rotation=10.0,
                        validation_fraction=0.25, callbacks=[("rec", rec)])
    net.fit(X_TRAIN, Y_TRAIN)
    originals = rows_of(net._check_X(X_TRAIN, reset=False))  # the scaled pixels fit trains on
    train_rows = rows_of(torch.cat(rec.train))
    valid_rows = rows_of(torch.cat(rec.valid))
    assert len(train_rows & originals) == 0  # every training image was transformed
    assert valid_rows <= originals and len(valid_rows) == 100  # validation never is
    # predict/score see the images as given: the probabilities are the module's on X itself.
    Xt = torch.from_numpy(X_TEST.astype(np.float32) / 255)
    with torch.no_grad():
        expected = torch.softmax(net.module_.eval()(Xt), 1).numpy()
    np.testing.assert_allclose(net.predict_proba(X_TEST), expected, atol=1e-6)
    assert "augment_" not in vars(net)  # the generator does not outlive fit (pickle stays small)


def test_training_iterator_is_wrapped_only_while_training():
    ds = Dataset(IMAGES, torch.zeros(64, dtype=torch.long))
    batches = AugmentedBatches(TensorBatchIterator(ds, batch_size=16), augment(shift=2.0))
    assert len(batches) == 4
    out = torch.cat([Xb for Xb, _ in batches])
    assert out.shape == IMAGES.shape and not torch.equal(out, IMAGES)
    net = MLPClassifier(augment_shift=2.0).initialize()
    assert not isinstance(net.get_iterator(ds, training=False), AugmentedBatches)


@pytest.mark.parametrize("cls", [SoftmaxRegressionClassifier, MLPClassifier, CNNClassifier])
def test_seeded_augmented_fits_are_reproducible(cls):
    params = dict(max_epochs=2, random_state=3, batch_size=64, augment_rotation=10.0,
                  augment_erasing=0.3, augment_blur=0.5)
    if cls is CNNClassifier:
        params["channels"] = (4, 8)
    a = cls(**params).fit(X_TRAIN, Y_TRAIN).predict_proba(X_TEST)
    b = cls(**params).fit(X_TRAIN, Y_TRAIN).predict_proba(X_TEST)
    plain = cls(**{**params, "augment_rotation": 0.0, "augment_erasing": 0.0, "augment_blur": 0.0})
    c = plain.fit(X_TRAIN, Y_TRAIN).predict_proba(X_TEST)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_thickness_and_slant_fits_are_reproducible_and_carried_by_params():
    X, y = X_TRAIN[:200], Y_TRAIN[:200]
    params = dict(max_epochs=1, random_state=5, batch_size=50, hidden_sizes=(16,),
                  validation_fraction=0, augment_slant=0.3, augment_thickness=0.5)
    net = MLPClassifier(**params)
    assert net.get_params()["augment_slant"] == 0.3
    assert net.get_params()["augment_thickness"] == 0.5
    assert repr(net._make_augment()) == "Augment(slant=0.3, thickness=0.5)"
    twin = clone(net.set_params(augment_thickness=0.25))
    assert twin.augment_slant == 0.3 and twin.augment_thickness == 0.25
    rec = RecordBatches()
    a = twin.set_params(callbacks=[("rec", rec)]).fit(X, y).predict_proba(X_TEST)
    params["augment_thickness"] = 0.25
    b = MLPClassifier(**params).fit(X, y).predict_proba(X_TEST)
    plain = MLPClassifier(**{**params, "augment_slant": 0.0, "augment_thickness": 0.0})
    c = plain.fit(X, y).predict_proba(X_TEST)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    originals = rows_of(twin._check_X(X, reset=False))
    assert len(rows_of(torch.cat(rec.train)) & originals) == 0  # the training rows changed


def test_gaps_are_an_estimator_parameter_checked_before_training():
    X, y = X_TRAIN[:200], Y_TRAIN[:200]
    params = dict(max_epochs=1, random_state=5, batch_size=50, hidden_sizes=(16,),
                  validation_fraction=0, augment_gaps=2)
    net = MLPClassifier(**params)
    assert repr(net._make_augment()) == "Augment(gaps=2)"
    assert clone(net).augment_gaps == 2
    a = net.fit(X, y).predict_proba(X_TEST)
    b = MLPClassifier(**params).fit(X, y).predict_proba(X_TEST)  # seeded: the same breaks
    c = MLPClassifier(**{**params, "augment_gaps": 0}).fit(X, y).predict_proba(X_TEST)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    with pytest.raises(ValueError, match=r"MLPClassifier: The 'augment_gaps' parameter must be "
                                         r"an int in \[0, 8\] .*Got 1.5 instead"):
        MLPClassifier(**{**params, "augment_gaps": 1.5}).fit(X, y)


def test_augmentation_is_searchable_with_set_params_and_grid_search():
    net = MLPClassifier(max_epochs=1, random_state=0, hidden_sizes=(32,))
    assert net.get_params()["augment_rotation"] == 0.0
    net.set_params(augment_rotation=12.0, augment_elastic=20.0)
    twin = clone(net)
    assert twin.augment_rotation == 12.0 and twin.augment_elastic == 20.0
    search = GridSearchCV(net, {"augment_shift": [0.0, 2.0], "augment_erasing": [0.0, 0.5]}, cv=2)
    search.fit(X_TRAIN, Y_TRAIN)
    assert len(search.cv_results_["params"]) == 4
    assert set(search.best_params_) == {"augment_shift", "augment_erasing"}
