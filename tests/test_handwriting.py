"""Stroke-width and slant normalisation (mnist_estimators.handwriting) and the hard level of the
drawn stroke set (mnist_estimators.strokes), on real images drawn with PIL and on MNIST."""

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from mnist_estimators import handwriting, strokes
from mnist_estimators.data import ink_crop, load_mnist, preprocess_image


def seven(width, size=300, blur=0.0, shear=0.0):
    """A "7" drawn dark on white with a pen ``width`` px wide, on a ``size`` px canvas."""
    img = Image.new("L", (size, size), 255)
    pts = np.array([(0.25, 0.15), (0.75, 0.15), (0.4, 0.85)]) * size
    pts[:, 0] += shear * (size / 2 - pts[:, 1])  # x' = x + shear * height above the middle
    ImageDraw.Draw(img).line([tuple(p) for p in pts], fill=0, width=width, joint="curve")
    return img.filter(ImageFilter.GaussianBlur(blur)) if blur else img


def frame_width(frame):
    """Stroke width of a 28x28 frame's digit, in px of the 20-px box."""
    return handwriting.stroke_width(handwriting.ink_core(ink_crop(frame.reshape(28, 28))))


def test_a_hairline_is_drawn_again_at_mnist_width():
    off = preprocess_image(seven(2), normalize_width=False, normalize_slant=False)
    on = preprocess_image(seven(2), normalize_slant=False)
    assert frame_width(off) < handwriting.MNIST_MIN_STROKE_WIDTH
    assert abs(frame_width(on) - handwriting.MNIST_STROKE_WIDTH) < 0.35, frame_width(on)
    assert on.sum() > 1.5 * off.sum()  # more ink: the line got thicker


@pytest.mark.parametrize("pen, size", [(1, 200), (2, 300), (3, 400), (2, 120)])
def test_a_redrawn_stroke_measures_as_mnists_median_in_the_frame(pen, size):
    frame = preprocess_image(seven(pen, size), normalize_slant=False)
    assert frame_width(frame) == pytest.approx(handwriting.MNIST_STROKE_WIDTH, abs=0.35)


def test_a_mnist_width_stroke_is_left_alone():
    ink = ink_crop(seven(24))
    assert handwriting.normalize_width(ink) is ink
    assert np.array_equal(preprocess_image(seven(24), normalize_slant=False),
                          preprocess_image(seven(24), normalize_width=False, normalize_slant=False))


def test_a_blurred_stroke_is_redrawn_crisp():
    blurred = ink_crop(seven(24, blur=12))
    core = handwriting.ink_core(blurred)
    assert handwriting.softness(blurred, core) > handwriting.MNIST_MAX_SOFTNESS
    crisp = handwriting.normalize_width(blurred)
    assert crisp is not blurred
    assert handwriting.softness(crisp, handwriting.ink_core(crisp)) < 0.1
    assert abs(handwriting.stroke_width(handwriting.ink_core(crisp))
               - handwriting.REDRAW_WIDTH) < 0.5


def test_a_faint_part_of_a_stroke_keeps_its_line():
    """The core is relative to the ink near each point: a pale stroke beside a dark one is not
    dropped when the digit is redrawn."""
    img = Image.new("L", (300, 300), 255)
    pen = ImageDraw.Draw(img)
    pen.line([(60, 50), (240, 50)], fill=0, width=2)  # dark bar of the 7
    pen.line([(240, 50), (120, 260)], fill=150, width=2)  # its stem in pale gray
    ink = handwriting.normalize_width(ink_crop(img))
    assert ink.shape[0] > 0.9 * ink.shape[1] * (210 / 180)  # the stem is still there: tall


def test_skeleton_of_a_bar_is_its_midline():
    bar = np.zeros((20, 60), bool)
    bar[6:13, 5:55] = True
    line = handwriting.skeleton(bar)
    rows, cols = np.nonzero(line)
    assert set(rows) <= {9} and cols.min() <= 9 and cols.max() >= 50  # one px wide, long
    assert not handwriting.skeleton(np.zeros((5, 5), bool)).any()


@pytest.mark.parametrize("shear", [0.9, -1.2])
def test_a_strong_slant_is_brought_to_mnists_range(shear):
    ink = ink_crop(seven(20, shear=shear))
    low, high = handwriting.MNIST_SKEW_RANGE
    before = handwriting.skew(ink)[0]
    assert not low <= before <= high
    after = handwriting.skew(handwriting.normalize_slant(ink))[0]
    assert after == pytest.approx(high if before > high else low, abs=0.03)


def test_a_mild_slant_is_left_alone():
    ink = ink_crop(seven(20, shear=-0.1))
    assert handwriting.normalize_slant(ink) is ink


@pytest.mark.full_mnist
def test_the_constants_are_mnists_and_mnist_digits_pass_unchanged(full_mnist_dir):
    X, _ = load_mnist("train", data_home=full_mnist_dir)
    stats = handwriting.mnist_statistics(ink_crop(row.reshape(28, 28)) for row in X[:10000])
    assert stats["stroke_width"] == pytest.approx(
        (handwriting.MNIST_MIN_STROKE_WIDTH, handwriting.MNIST_STROKE_WIDTH), abs=0.04)
    assert stats["softness"] == pytest.approx(handwriting.MNIST_MAX_SOFTNESS, abs=0.01)
    assert stats["skew"] == pytest.approx(handwriting.MNIST_SKEW_RANGE, abs=0.02)
    X_test, _ = load_mnist("test", data_home=full_mnist_dir)
    low, high = handwriting.MNIST_SKEW_RANGE
    inside, same = [], []
    for f in X_test[:300]:
        ink = ink_crop(f.reshape(28, 28))
        core = handwriting.ink_core(ink)
        inside.append(low <= handwriting.skew(ink)[0] <= high
                      and handwriting.stroke_width(core) >= handwriting.MNIST_MIN_STROKE_WIDTH
                      and handwriting.softness(ink, core) <= handwriting.MNIST_MAX_SOFTNESS)
        same.append(np.array_equal(preprocess_image(f.reshape(28, 28)), preprocess_image(
            f.reshape(28, 28), normalize_width=False, normalize_slant=False)))
    assert same == inside  # a digit in MNIST's ranges passes untouched, and only such a digit
    assert 0.3 < np.mean(same) < 0.7, np.mean(same)  # the middle half of skews, ~1% redrawn


# --------------------------------------------------------------------------- the hard level


def test_the_hard_level_is_seeded_sized_and_says_what_it_drew(tmp_path):
    assert strokes.make_set(tmp_path / "a", per_digit=4, level="hard") == 40
    strokes.make_set(tmp_path / "b", per_digit=4, level="hard")
    strokes.make_set(tmp_path / "v", per_digit=4, level="hard", split="validation")
    same = [(tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
            for f in strokes.read_factors(tmp_path / "a").index]
    assert all(same)
    differs = [(tmp_path / "a" / f).read_bytes() != (tmp_path / "v" / f).read_bytes()
               for f in strokes.read_factors(tmp_path / "v").index]
    assert all(differs)  # the validation split is another draw
    factors = strokes.read_factors(tmp_path / "a")
    assert len(factors) == 40 and set(factors.level) == {"hard"}
    assert list(factors.digit) == sorted(factors.digit)
    assert {"width", "pressure", "small", "blur", "slant", "rotation", "gaps", "paper"} <= set(factors)
    X, y = np.stack([preprocess_image(tmp_path / "a" / f) for f in factors.index]), factors.digit
    assert X.shape == (40, 784) and len(y) == 40


def test_the_hard_level_spans_what_real_handwriting_does(tmp_path):
    rng = np.random.default_rng(5)
    drawn = [strokes.draw_digit(d % 10, rng, level="hard") for d in range(200)]
    f = [img.info["factors"] for img in drawn]
    width = np.array([x["width"] for x in f])
    assert width.min() < 0.02 and width.max() > 0.12  # hairline to very bold
    assert {x["paper"] for x in f} == {"plain", "ruled", "squared", "transparent"}
    assert any(x["gaps"] for x in f) and any(x["small"] for x in f) and any(x["blur"] for x in f)
    assert max(abs(x["rotation"]) for x in f) > 25 and min(x["slant"] for x in f) < -0.6
    easy = [strokes.draw_digit(d % 10, rng).info["factors"] for d in range(50)]
    assert all(x["paper"] in ("plain", "transparent") and not x["gaps"] for x in easy)


@pytest.mark.parametrize("kwargs, match", [
    ({"level": "extreme"}, "'level' parameter must be one of \\['easy', 'hard'\\]"),
    ({"split": "train"}, "'split' parameter must be one of \\['test', 'validation'\\]"),
])
def test_bad_level_or_split_is_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        strokes.make_set(tmp_path, per_digit=1, **kwargs)
    assert not any(tmp_path.iterdir())


def test_read_factors_of_a_folder_not_made_by_make_set(tmp_path):
    with pytest.raises(FileNotFoundError, match="factors.csv does not exist"):
        strokes.read_factors(tmp_path)


def test_the_command_line_writes_a_hard_validation_set(tmp_path):
    assert strokes.main([str(tmp_path), "--per-digit", "2", "--level", "hard",
                         "--split", "validation"]) == 0
    assert len(strokes.read_factors(tmp_path)) == 20
